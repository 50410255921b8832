#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds qrag, finds a model and generates text.
#
#   QRAG_MODEL=path     a llama2.c .bin or a Hugging Face Llama/Mistral/Qwen2 directory (default: the
#                       stories260K checkpoint in ../shared, else stories15M downloaded to ~/.cache/qrag)
#   QRAG_QUANT=q        fp32 | bf16 | fp8 | int8 (default fp32)
#   QRAG_PROMPT=text    the prompt (default below)
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
echo "setup: generating with $model (${QRAG_QUANT:-fp32})"
echo "----"
"${QRAG_BUILD_DIR:-build}/server/tools/qrag-run" --model "$model" --quant "${QRAG_QUANT:-fp32}" \
  --prompt "$prompt" --max-tokens 200 --temperature 0.8 --top-p 0.9 --seed 42
