#!/usr/bin/env bash
# Packs what bench/gpu/device-check.sh runs on a GPU machine into .device/ (git-ignored), built HERE (the
# GPU machine has CUDA 13.0, CMake and PyTorch but no absl, gtest, ICU, sentencepiece or gRPC):
#   build-gpu/   Release, -DQRAG_BUILD_SERVER=OFF, sm_90a (QRAG_CUDA_ARCHITECTURES=90a)
#   .device/bin  the GPU test binaries, gemm_bench, qrag-run
#   .device/lib  their shared libraries from ldd, except the CUDA libraries (the device has CUDA 13.0's
#                libcudart/libcublas/libcublasLt; cudart is linked statically anyway), the driver (libcuda)
#                and glibc itself
#   .device/lib-cxx  this machine's libstdc++/libgcc_s, for a device whose own are older (they need glibc
#                >= 2.36; device-check.sh uses them only where they load)
#   .device/shared/models/stories260K   the checkpoint, tokenizer and the gold files the tests read
# Then:  run(command="bash bench/gpu/device-check.sh", carry=[".device"], timeout_s=540)
#
#   bash bench/gpu/pack.sh            (QRAG_BUILD_JOBS=N for more parallel compile jobs; default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
shared="${QRAG_SHARED_DIR:-$root/../shared}"
stories="$shared/models/stories260K"
if [ ! -f "$stories/stories260K.bin" ]; then
  echo "pack.sh: $stories/stories260K.bin not found (set QRAG_SHARED_DIR)" >&2
  exit 1
fi

launchers=()
if command -v ccache >/dev/null 2>&1; then
  launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DQRAG_BUILD_SERVER=OFF \
  -DQRAG_ENABLE_CUDA=ON -DQRAG_CUDA_ARCHITECTURES=90a "${launchers[@]}" >/dev/null
bins=(registry_test gemm_plan_test cuda_kernels_test cuda_backend_test cuda_transformer_test gemm_bench qrag-run)
cmake --build build-gpu --parallel "${QRAG_BUILD_JOBS:-2}" --target "${bins[@]}"

rm -rf .device
mkdir -p .device/bin .device/lib .device/lib-cxx .device/shared/models/stories260K/expected
for b in "${bins[@]}"; do
  f=$(find build-gpu -type f -name "$b" -perm -u+x | head -1)
  [ -n "$f" ] || { echo "pack.sh: built binary $b not found" >&2; exit 1; }
  cp "$f" .device/bin/
  strip --strip-debug .device/bin/"$b"
done

# Shared libraries: everything ldd resolves, minus CUDA, the driver and glibc (the device brings those).
excluded='^(libcuda|libcudart|libcublas|libcublasLt|libnvidia|libc|libm|libdl|librt|libpthread|ld-linux|linux-vdso|libresolv)\.so'
for b in .device/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  name=$(basename "$lib")
  if [[ "$name" =~ $excluded ]]; then continue; fi
  case "$name" in
    libstdc++.so.*|libgcc_s.so.*) cp -L "$lib" .device/lib-cxx/"$name" ;;
    *) cp -L "$lib" .device/lib/"$name" ;;
  esac
done

cp "$stories/stories260K.bin" "$stories/tok512.bin" .device/shared/models/stories260K/
cp "$stories"/expected/greedy_t0.0_n200.* "$stories"/expected/prompted_greedy_n128.* .device/shared/models/stories260K/expected/

# The binaries must start with only .device/lib (they skip their GPU tests here, without a GPU); lib-cxx is
# checked too, as device-check.sh may add it.
for libs in "$root/.device/lib" "$root/.device/lib:$root/.device/lib-cxx"; do
  for b in registry_test gemm_plan_test; do
    env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$libs" ".device/bin/$b" --gtest_brief=1 >/dev/null
  done
done
env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$root/.device/lib:$root/.device/lib-cxx" .device/bin/cuda_backend_test \
  --gtest_filter='CudaParity.*' --gtest_brief=1 >/dev/null
glibc=$(for b in .device/bin/* .device/lib/* .device/lib-cxx/*; do objdump -T "$b" 2>/dev/null; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "pack.sh: .device/ holds $(du -sh .device | cut -f1) ($(ls .device/bin | wc -l) binaries, $(ls .device/lib | wc -l) libraries); newest glibc symbol needed: $glibc"
ls -la .device/bin .device/lib .device/lib-cxx
