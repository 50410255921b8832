#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds qrag, finds a model, generates text offline
# with qrag-run, then serves the model with qrag-server and makes one call with the `qrag` client.
#
#   QRAG_MODEL=path     a llama2.c .bin or a Hugging Face Llama/Mistral/Qwen2 directory (default: the
#                       stories260K checkpoint in ../shared, else stories15M downloaded to ~/.cache/qrag)
#   QRAG_QUANT=q        fp32 | bf16 | fp8 | int8 (default fp32)
#   QRAG_PROMPT=text    the prompt (default below)
#   QRAG_PORT=n         the server's port on 127.0.0.1 (default: any free port)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bash deploy/install-deps.sh
bash deploy/build.sh

model="${QRAG_MODEL:-}"
if [ -z "$model" ]; then
  for candidate in "${QRAG_SHARED_DIR:-$repo/../shared}/models/stories260K/stories260K.bin"; do
    if [ -f "$candidate" ]; then model="$candidate"; fi
  done
fi
if [ -z "$model" ]; then
  # A small public checkpoint: Karpathy's TinyStories 15M (llama2.c format, MIT) and the Llama 2 tokenizer.
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/qrag/stories15M"
  mkdir -p "$cache"
  if [ ! -s "$cache/stories15M.bin" ]; then
    echo "setup: no QRAG_MODEL given and no local model found; downloading stories15M (58 MB) to $cache"
    curl -fL --retry 2 -o "$cache/stories15M.bin.part" \
      https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin
    curl -fL --retry 2 -o "$cache/tokenizer.bin" \
      https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin
    mv "$cache/stories15M.bin.part" "$cache/stories15M.bin"
  fi
  model="$cache/stories15M.bin"
fi

prompt="${QRAG_PROMPT:-Once upon a time, a little robot}"
build="${QRAG_BUILD_DIR:-build}"
echo "setup: generating with $model (${QRAG_QUANT:-fp32})"
echo "----"
"$build/server/tools/qrag-run" --model "$model" --quant "${QRAG_QUANT:-fp32}" \
  --prompt "$prompt" --max-tokens 200 --temperature 0.8 --top-p 0.9 --seed 42

# The same model behind the gRPC server: start it, wait for health SERVING, call it once, stop it (SIGTERM
# drains in-flight requests and exits 0).
echo "----"
log=$(mktemp)
"$build/server/tools/qrag-server" --model "$model" --quant "${QRAG_QUANT:-fp32}" \
  --listen "127.0.0.1:${QRAG_PORT:-0}" 2> "$log" &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; rm -f "$log"' EXIT
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/^qrag-server: listening on //p' "$log" | head -n 1)
  if [ -n "$addr" ]; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$log" >&2; echo "setup: qrag-server failed to start" >&2; exit 1; fi
  sleep 0.1
done
if [ -z "$addr" ]; then cat "$log" >&2; echo "setup: qrag-server did not start listening" >&2; exit 1; fi
echo "setup: qrag-server listening on $addr; waiting for health SERVING"
"$build/client/qrag" health --server "$addr" --wait 300
echo "setup: qrag generate --server $addr --stream"
echo "----"
"$build/client/qrag" generate --server "$addr" --prompt "$prompt" --max-tokens 200 --temperature 0.8 \
  --top-p 0.9 --seed 42 --stream --timeout 300
echo "----"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
trap 'rm -f "$log"' EXIT
cat "$log" >&2
if [ "$status" -ne 0 ]; then echo "setup: qrag-server exited with status $status" >&2; exit 1; fi
echo "setup: done (qrag-server stopped cleanly)"
