#!/usr/bin/env bash
# The hardening checks of CI (.ci/run; docs/reliability.md "Sanitizers" and "Fuzzing"), each in its own build
# with clang:
#   1. ASan + UBSan (build-asan, also the libFuzzer targets): the unit tests and the serving / RAG integration
#      tests against the instrumented binaries; leaks are findings.
#   2. Fuzzing: every fuzz target for QRAG_FUZZ_SECONDS (default 30) from its seeds (tests/run-fuzz.sh).
#   3. TSan (build-tsan): the engine, scheduler, work queue and thread pool (two-thread GEMM) tests.
#   tsan-serving (not in CI's default: building the whole server under TSan does not fit CI's time budget):
#      the C++ client/server tests and the serving integration test against a TSan-built qrag-server.
# QRAG_HARDENING_STEPS=asan,fuzz,tsan (the default) selects steps. Prints each step's time. Exits non-zero on any
# finding.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${QRAG_HARDENING_STEPS:-asan,fuzz,tsan}"
jobs="${QRAG_BUILD_JOBS:-$(nproc)}"
test_jobs="${QRAG_TEST_JOBS:-$(nproc)}"
supp="$(pwd)/tests/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:detect_stack_use_after_return=0:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"

timed() {
  local name="$1"
  shift
  local t0=$SECONDS
  echo "hardening: $name ..."
  "$@"
  echo "hardening: $name took $((SECONDS - t0)) s"
}

# The serving and RAG integration tests: the real server, client and CLI over gRPC.
# (rag_integration_api: the part of rag_integration that fits a sanitizer build's time; tests/CMakeLists.txt.)
integration='^(ClientServerTest\.|ClientTest\.|serving_integration$|security_integration$|rag_integration_api$)'

asan() {
  bash tests/configure-sanitized.sh build-asan address,undefined
  timed "asan build" cmake --build build-asan --parallel "$jobs"
  timed "asan tests" ctest --test-dir build-asan --output-on-failure --timeout 1200 -j "$test_jobs" -L unit -LE gpu
  timed "asan integration" ctest --test-dir build-asan --output-on-failure --timeout 1800 -j "$test_jobs" \
    -R "$integration" -LE gpu
}

fuzz() {
  QRAG_FUZZ_BUILD_DIR=build-asan timed "fuzz" bash tests/run-fuzz.sh "${QRAG_FUZZ_SECONDS:-30}"
}

tsan() {
  bash tests/configure-sanitized.sh build-tsan thread
  timed "tsan build" cmake --build build-tsan --parallel "$jobs" --target engine_test scheduler_test common_test \
    cpu_gemm_test http_server_test
  # The thread pool through the GEMMs that split work across two threads.
  local tests='^(EngineTest|BlockManager|Scheduler|SchedulerTrace|RequestLimits|WorkQueue|Echo)\.'
  tests+='|^CpuGemmBatchInvariance\..*_M64_.*Threads2$'
  # The HTTP server: I/O threads, strands, and Exchange calls from other threads (the engine's).
  tests+='|^HttpServer\.'
  timed "tsan tests" ctest --test-dir build-tsan --output-on-failure --timeout 1800 -j "$test_jobs" -R "$tests"
}

tsan_serving() {
  bash tests/configure-sanitized.sh build-tsan thread
  timed "tsan serving build" cmake --build build-tsan --parallel "$jobs" --target client_server_test qrag-server \
    qrag-run qrag-make-model qrag
  timed "tsan serving tests" ctest --test-dir build-tsan --output-on-failure --timeout 1800 -j "$test_jobs" \
    -R '^(ClientServerTest|ClientTest|serving_integration)'
}

IFS=, read -ra wanted <<< "$steps"
t_all=$SECONDS
for s in "${wanted[@]}"; do
  case "$s" in
    asan) asan ;;
    fuzz) fuzz ;;
    tsan) tsan ;;
    tsan-serving) tsan_serving ;;
    *) echo "run-hardening: unknown step '$s' (asan, fuzz, tsan, tsan-serving)" >&2; exit 2 ;;
  esac
done
echo "hardening: all steps (${steps}) passed in $((SECONDS - t_all)) s"
