// The GEMM epilogue of the CPU reference (server/backend/cpu/cpu_gemm.h), applied to the raw sums a
// cuBLASLt plan wrote (gemm_plan.h), bit for bit:
//   acc = the sum as fp32 (int32 sums are rounded once to fp32);
//   scaled (fp8/int8): s = x_scale[i] * w_scale[j] in fp32; y = fma(acc, s, bias[j]), or acc * s without bias;
//   unscaled (fp32/bf16): y = acc + bias[j], or acc.
// The sums are [m, ld] (ld >= n: padded output channels are dropped); y is [m, n].
#ifndef QRAG_KERNELS_GEMM_EPILOGUE_CUH_
#define QRAG_KERNELS_GEMM_EPILOGUE_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

struct GemmEpilogueArgs {
  const void* acc = nullptr;  // [m, ld] fp32, or int32 when acc_is_int32
  bool acc_is_int32 = false;
  int64_t m = 0;
  int64_t n = 0;
  int64_t ld = 0;
  const float* x_scale = nullptr;  // [m] or null (then w_scale must be null too)
  const float* w_scale = nullptr;  // [n] or null
  const float* bias = nullptr;     // [n] or null
  float* y = nullptr;              // [m, n]; may alias acc only when ld == n and acc is fp32
};

cudaError_t LaunchGemmEpilogue(const GemmEpilogueArgs& args, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_GEMM_EPILOGUE_CUH_
