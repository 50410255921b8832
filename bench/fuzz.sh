#!/usr/bin/env bash
# Longer fuzzing than CI's 30 s per target: every fuzz target of tests/fuzz/ for SECONDS (default 600), two at a
# time, from the committed seeds; prints executions, rate and coverage per target (docs/reliability.md
# "Fuzzing"). Needs clang and libclang-rt-14-dev (deploy/install-deps.sh). Crashing inputs are kept in the work
# directory it prints; each becomes a regression input in tests/fuzz/regressions/<target>/ with its fix.
#
#   bash bench/fuzz.sh [SECONDS] [fuzz_target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
exec bash tests/run-fuzz.sh "$seconds" "$@"
