#!/usr/bin/env bash
# THE device script: everything GPU-side of issue "CUDA backend I" in one run on the GPU machine.
#
#   here:    bash bench/gpu/pack.sh
#   device:  run(command="bash bench/gpu/device-check.sh", carry=[".device"], timeout_s=540)
#
# Steps (each under its own time limit, so one hang cannot eat the run; ~5-7 minutes on an H200):
#   1. environment: nvidia-smi, the CUDA libraries found, ldd of the packed binaries;
#   2. the GPU tests (QRAG_REQUIRE_GPU=1 and QRAG_REQUIRE_SHARED=1: a skip is a failure here):
#      registry_test, gemm_plan_test, cuda_kernels_test, cuda_backend_test (incl. the encoder ops:
#      LayerNorm, GELU, EncoderAttention), cuda_transformer_test;
#   3. qrag-run on stories260K with --device cuda: fp32 greedy text vs the gold file; bf16/fp8/int8 text
#      next to the CPU's;
#   4. gemm_bench (cuBLASLt TFLOP/s, copy-bandwidth ratios, best algorithm vs ours);
#   5. bench/gemm_torch.py (torch.matmul bf16, torch._scaled_mm fp8, torch._int_mm int8);
#   6. compute-sanitizer memcheck over some kernels, when time is left (information).
# Results under $OUT (at most 8 files come back): device-check.log (everything printed), gtest.json (all
# test results), run.txt (qrag-run outputs), gemm_bench.json, gemm_torch.json. The last lines printed are a
# summary table; the exit status is 1 when any line of it says FAIL.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/qrag-device-out}"
mkdir -p "$OUT"
D="$PWD/.device"
exec > >(tee "$OUT/device-check.log") 2>&1
tee_pid=$!
start=$(date +%s)
declare -a summary

note() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }
elapsed() { echo $(( $(date +%s) - start ))s; }

if [ ! -x "$D/bin/cuda_backend_test" ]; then
  echo "device-check: $D/bin is missing: run bash bench/gpu/pack.sh here first and carry .device"
  exit 1
fi

echo "== 1. environment ($(elapsed))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw --format=csv || true
cuda_dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13.0/lib64; do
  [ -e "$d/libcublasLt.so.13" ] && cuda_dirs+=("$d")
done
py=$(command -v python3 || true)
if [ -n "$py" ]; then
  while read -r d; do [ -n "$d" ] && [ -e "$d/libcublasLt.so.13" ] && cuda_dirs+=("$d"); done < <(
    "$py" -c 'import glob, os, site
for p in site.getsitepackages():
    for d in glob.glob(os.path.join(p, "nvidia", "*", "lib")): print(d)' 2>/dev/null)
fi
if [ ${#cuda_dirs[@]} -eq 0 ]; then
  found=$(find / -name 'libcublasLt.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)
  [ -n "$found" ] && cuda_dirs+=("$(dirname "$found")")
fi
echo "libcublasLt.so.13 in: ${cuda_dirs[*]:-NOT FOUND}"
cuda_path=$(IFS=:; echo "${cuda_dirs[*]:-}")
export LD_LIBRARY_PATH="$D/lib${cuda_path:+:$cuda_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# This build's libstdc++ only where it loads (it needs glibc >= 2.36) and the device's own is too old.
if ! "$D/bin/registry_test" --gtest_list_tests >/dev/null 2>&1; then
  export LD_LIBRARY_PATH="$D/lib-cxx:$LD_LIBRARY_PATH"
  echo "using the packed libstdc++ (the device's did not load the binaries)"
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd "$D/bin/cuda_backend_test" | grep -E 'not found|cublas|stdc' || true
export QRAG_SHARED_DIR="$D/shared" QRAG_REQUIRE_GPU=1 QRAG_REQUIRE_SHARED=1

echo "== 2. GPU tests ($(elapsed))"
mkdir -p /tmp/qrag-gtest
# Binaries split by suite, so that a device fault in one suite (which poisons the CUDA context of its
# process) cannot hide the results of the others.
runs=("registry_test:*" "gemm_plan_test:*" "cuda_kernels_test:CudaGemmPlan.*" "cuda_kernels_test:Formats/*"
      "cuda_backend_test:Shapes/CudaGemmParity.*" "cuda_backend_test:CudaParity.*"
      "cuda_backend_test:Shapes/CudaAttentionParity.*"
      "cuda_backend_test:CudaEncoderParity.*:Shapes/CudaLayerNormParity.*:Shapes/CudaEncoderAttentionParity.*"
      "cuda_transformer_test:*")
i=0
for r in "${runs[@]}"; do
  t=${r%%:*}; filter=${r#*:}; i=$((i + 1))
  echo "-- $t --gtest_filter=$filter ($(elapsed))"
  timeout -k 5 120 "$D/bin/$t" --gtest_filter="$filter" --gtest_output="json:/tmp/qrag-gtest/$i-$t.json" 2>&1 |
    grep -vE '^\[ +(RUN|OK) +\]'
  rc=${PIPESTATUS[0]}
  note "$t $filter" "$([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")"
done
python3 - "$OUT/gtest.json" /tmp/qrag-gtest/*.json <<'PY' || true
import json, sys
out = {}
for p in sys.argv[2:]:
    try:
        out[p.rsplit("/", 1)[-1]] = json.load(open(p))
    except Exception as e:  # a crashed binary leaves no or a partial file
        out[p.rsplit("/", 1)[-1]] = {"error": str(e)}
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY

echo "== 3. qrag-run stories260K on the GPU ($(elapsed))"
model="$D/shared/models/stories260K/stories260K.bin"
gold="$D/shared/models/stories260K/expected/greedy_t0.0_n200.txt"
{
  for q in fp32 bf16 fp8 int8; do
    for dev in cuda cpu; do
      echo "### --device $dev --quant $q"
      timeout -k 5 60 "$D/bin/qrag-run" --model "$model" --device "$dev" --quant "$q" --temperature 0 \
        --max-tokens 200 > "/tmp/qrag-run-$dev-$q.txt" 2> "/tmp/qrag-run-$dev-$q.err"
      echo "exit $?"; cat "/tmp/qrag-run-$dev-$q.txt" "/tmp/qrag-run-$dev-$q.err"
    done
  done
} > "$OUT/run.txt" 2>&1
if cmp -s "/tmp/qrag-run-cuda-fp32.txt" <(cat "$gold"; echo); then
  note "qrag-run cuda fp32 == gold" PASS
else
  note "qrag-run cuda fp32 == gold" FAIL
fi
for q in bf16 fp8 int8; do
  if cmp -s "/tmp/qrag-run-cuda-$q.txt" "/tmp/qrag-run-cpu-$q.txt"; then
    note "qrag-run cuda $q text == cpu $q" "same (info)"
  else
    note "qrag-run cuda $q text == cpu $q" "differs (info; tests use top-1 agreement)"
  fi
done
grep -h "tok/s" /tmp/qrag-run-cuda-*.err || true

echo "== 4. gemm_bench ($(elapsed))"
timeout -k 5 200 "$D/bin/gemm_bench" --json "$OUT/gemm_bench.json"
rc=$?
note "gemm_bench" "$([ "$rc" -eq 0 ] && echo ran || echo "FAIL (exit $rc)")"

echo "== 5. gemm_torch.py ($(elapsed))"
PYTHONUNBUFFERED=1 timeout -k 5 150 python3 bench/gemm_torch.py --json "$OUT/gemm_torch.json"
rc=$?
note "gemm_torch.py" "$([ "$rc" -eq 0 ] && echo ran || echo "FAIL (exit $rc)")"

echo "== 6. compute-sanitizer memcheck of the hand-written kernels, if time is left ($(elapsed))"
if command -v compute-sanitizer >/dev/null 2>&1 && [ $(( $(date +%s) - start )) -lt 420 ]; then
  timeout -k 5 90 compute-sanitizer --tool memcheck --error-exitcode 3 "$D/bin/cuda_backend_test" \
    --gtest_filter='CudaParity.EmbedGathersExactly:CudaParity.RopeBothPairingsGqaWithinTolerance:CudaParity.SiluMulAndAdd:Shapes/CudaAttentionParity.*/0:Shapes/CudaGemmParity.*/1:Shapes/CudaLayerNormParity.*/3:Shapes/CudaEncoderAttentionParity.*/2:Shapes/CudaEncoderAttentionParity.*/4' 2>&1 | tail -25
  rc=${PIPESTATUS[0]}
  note "compute-sanitizer memcheck" "$([ "$rc" -eq 0 ] && echo "clean" || echo "exit $rc (info)")"
else
  note "compute-sanitizer memcheck" "skipped (not installed or no time left)"
fi

echo "== summary ($(elapsed))"
printf '%s\n' "${summary[@]}"
status=0
printf '%s\n' "${summary[@]}" | grep -q FAIL && status=1
exec 1>&- 2>&-
wait "$tee_pid" 2>/dev/null || true  # the log is complete before the command returns
exit "$status"
