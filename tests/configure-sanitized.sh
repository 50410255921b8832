#!/usr/bin/env bash
# Configures (once) a clang build with sanitizers: tests/configure-sanitized.sh BUILD_DIR SANITIZERS
# SANITIZERS: address,undefined (also builds the libFuzzer targets, QRAG_FUZZ=ON) or thread.
# -O1 and line tables only: reports carry file:line, and the build stays short (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="$1"
sanitizers="$2"
fuzz=OFF
if [ "$sanitizers" = address,undefined ]; then fuzz=ON; fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
launcher=()
if command -v ccache >/dev/null 2>&1 && [ "${QRAG_NO_CCACHE:-0}" != 1 ]; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
mkdir -p "$build_dir"
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Sanitize \
    -DCMAKE_CXX_FLAGS_SANITIZE="-O1" -DCMAKE_C_FLAGS_SANITIZE="-O1" \
    -DQRAG_SANITIZE="$sanitizers" -DQRAG_FUZZ="$fuzz" -DQRAG_ENABLE_CUDA=OFF -DQRAG_BUILD_BENCHMARKS=OFF \
    "${launcher[@]}" > "$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log"; exit 1; }
fi
