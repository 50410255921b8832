#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz/ (or those named) for SECONDS each, two at a time, starting from the
# committed seeds (plus ../shared's chat templates for fuzz_jinja). Builds them first with clang, libFuzzer,
# ASan and UBSan into ${QRAG_FUZZ_BUILD_DIR:-build-asan} (the build tests/run-hardening.sh also tests with).
#
#   bash tests/run-fuzz.sh [SECONDS] [fuzz_target ...]      (default 60 s per target)
#
# Prints, per target, the executions, the inputs/s and the coverage reached; exits 1 when a target crashed,
# leaked, timed out on an input or ran out of memory. Crashing inputs are kept in $QRAG_FUZZ_WORK_DIR/<target>/
# (default: a new temp dir); add each to tests/fuzz/regressions/<target>/ with the fix (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
build_dir="${QRAG_FUZZ_BUILD_DIR:-build-asan}"
work="${QRAG_FUZZ_WORK_DIR:-$(mktemp -d /tmp/qrag-fuzz.XXXXXX)}"
mkdir -p "$work"
shared="${QRAG_SHARED_DIR:-$(cd .. && pwd)/shared}"

bash tests/configure-sanitized.sh "$build_dir" address,undefined
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd tests/fuzz && grep -l LLVMFuzzerTestOneInput fuzz_*.cc | sed 's/\.cc$//')
fi
cmake --build "$build_dir" --parallel "${QRAG_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local t="$1" dir="$work/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -n tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
  if [ -d "tests/fuzz/regressions/$t" ]; then cp -n tests/fuzz/regressions/"$t"/* "$dir/corpus/" 2>/dev/null || true; fi
  if [ "$t" = fuzz_gguf ]; then cp -n tests/data/gguf/gold.gguf "$dir/corpus/gold.gguf"; fi
  if [ "$t" = fuzz_jinja ] && [ -d "$shared/data/chat-templates" ]; then
    for f in "$shared"/data/chat-templates/*.jinja; do cp -n "$f" "$dir/corpus/shared_$(basename "$f")"; done
  fi
  local rc=0
  # -rss_limit_mb / -malloc_limit_mb: an input that makes a parser allocate more than 2 GiB is a finding.
  # -timeout: one input running longer than 10 s is a finding (a hang).
  "$build_dir/tests/fuzz/$t" "$dir/corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    > "$dir/log" 2>&1 || rc=$?
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 | grep -o '[0-9]*' || echo "?")
  local status=ok
  if [ "$rc" -ne 0 ] || ls "$dir/artifacts" | grep -q .; then status="FAILED (rc $rc; see $dir/log)"; fi
  printf '%-26s %10s execs %8s/s  cov %6s  %s\n' "$t" "$execs" "$(( ${execs/\?/0} / (seconds > 0 ? seconds : 1) ))" \
    "$cov" "$status"
  [ "$status" = ok ]
}
export -f run_one
export build_dir work shared seconds

echo "fuzz: ${#targets[@]} targets, ${seconds} s each, work dir $work"
printf '%s\n' "${targets[@]}" | xargs -P "${QRAG_FUZZ_JOBS:-2}" -I{} bash -c 'run_one {}' > "$work/summary" || true
sort "$work/summary"
if grep -q FAILED "$work/summary"; then
  echo "fuzz: FAILED; inputs that crashed are in $work/<target>/artifacts/" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds} s without a finding"
