#!/usr/bin/env bash
# Configures and builds qrag into ${QRAG_BUILD_DIR:-build}. The one build recipe: used by the README's
# commands, by .ci/run, and (later) by the Dockerfile. Extra arguments go to CMake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${QRAG_BUILD_DIR:-build}"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" "$@"
fi
cmake --build "$build_dir" --parallel "${QRAG_BUILD_JOBS:-$(nproc)}"
