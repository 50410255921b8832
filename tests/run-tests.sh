#!/usr/bin/env bash
# The README's test command: builds qrag (deploy/build.sh) and runs the whole test suite with CTest.
# Tests that need ../shared data skip without it, or fail when QRAG_REQUIRE_SHARED=1 (as in CI).
# Tests labelled `gpu` skip themselves on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/build.sh
ctest --test-dir "${QRAG_BUILD_DIR:-build}" --output-on-failure --timeout 900 -j "${QRAG_TEST_JOBS:-$(nproc)}" "$@"
