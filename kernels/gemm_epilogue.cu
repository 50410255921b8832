#include "kernels/gemm_epilogue.cuh"

namespace qrag::kernels {
namespace {

template <bool kInt32, bool kScaled, bool kBias>
__global__ void GemmEpilogueKernel(const void* acc, int64_t n, int64_t ld, const float* __restrict__ x_scale,
                                   const float* __restrict__ w_scale, const float* __restrict__ bias, float* y) {
  const int64_t i = blockIdx.y;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float a;
    if constexpr (kInt32) {
      a = __int2float_rn(static_cast<const int32_t*>(acc)[i * ld + j]);
    } else {
      a = static_cast<const float*>(acc)[i * ld + j];
    }
    float out;
    if constexpr (kScaled) {
      const float s = __fmul_rn(x_scale[i], w_scale[j]);
      out = kBias ? __fmaf_rn(a, s, bias[j]) : __fmul_rn(a, s);
    } else {
      out = kBias ? __fadd_rn(a, bias[j]) : a;
    }
    y[i * n + j] = out;
  }
}

template <bool kInt32, bool kScaled, bool kBias>
void Launch(const GemmEpilogueArgs& a, cudaStream_t stream) {
  int64_t bx = (a.n + 255) / 256;
  if (bx > 1024) bx = 1024;
  // gridDim.y is limited to 65535 rows per launch.
  for (int64_t r0 = 0; r0 < a.m; r0 += 65535) {
    const int64_t rows = a.m - r0 < 65535 ? a.m - r0 : 65535;
    const size_t elem = kInt32 ? sizeof(int32_t) : sizeof(float);
    const void* acc = static_cast<const char*>(a.acc) + r0 * a.ld * elem;
    GemmEpilogueKernel<kInt32, kScaled, kBias><<<dim3(static_cast<unsigned>(bx), static_cast<unsigned>(rows)), 256,
                                                  0, stream>>>(acc, a.n, a.ld,
                                                               a.x_scale != nullptr ? a.x_scale + r0 : nullptr,
                                                               a.w_scale, a.bias, a.y + r0 * a.n);
  }
}

}  // namespace

cudaError_t LaunchGemmEpilogue(const GemmEpilogueArgs& a, cudaStream_t stream) {
  if (a.m == 0 || a.n == 0) return cudaSuccess;
  if ((a.x_scale == nullptr) != (a.w_scale == nullptr) || a.ld < a.n) return cudaErrorInvalidValue;
  const bool scaled = a.x_scale != nullptr, bias = a.bias != nullptr;
  if (a.acc_is_int32) {
    if (!scaled) return cudaErrorInvalidValue;  // int32 sums always carry scales
    bias ? Launch<true, true, true>(a, stream) : Launch<true, true, false>(a, stream);
  } else if (scaled) {
    bias ? Launch<false, true, true>(a, stream) : Launch<false, true, false>(a, stream);
  } else {
    bias ? Launch<false, false, true>(a, stream) : Launch<false, false, false>(a, stream);
  }
  return cudaGetLastError();
}

}  // namespace qrag::kernels
