#include "kernels/silu_mul.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

// The CPU backend's g * (1 / (1 + exp(-g))) * u, in that order.
__device__ __forceinline__ float SiluMulValue(float g, float u) {
  return __fmul_rn(__fmul_rn(g, __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)))), u);
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t n, float* out, bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n4 = vector ? n / 4 : 0;
  // 16-byte accesses for the bulk when all three pointers are 16-byte aligned, scalar tail.
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    const float4 g = reinterpret_cast<const float4*>(gate)[i];
    const float4 u = reinterpret_cast<const float4*>(up)[i];
    reinterpret_cast<float4*>(out)[i] =
        make_float4(SiluMulValue(g.x, u.x), SiluMulValue(g.y, u.y), SiluMulValue(g.z, u.z), SiluMulValue(g.w, u.w));
  }
  for (int64_t i = n4 * 4 + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    out[i] = SiluMulValue(gate[i], up[i]);
  }
}

template <QuantFormat F>
__global__ void SiluMulQuantizeKernel(const float* __restrict__ gate, const float* __restrict__ up, int cols,
                                      int ld, void* __restrict__ codes, float* __restrict__ scales) {
  __shared__ float scratch[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * cols;
  char* o = static_cast<char*>(codes) + static_cast<int64_t>(blockIdx.x) * ld * QuantBytes(F);
  QuantizeRow<F>(
      cols, ld, [=](int c) { return SiluMulValue(gate[off + c], up[off + c]); }, o,
      scales != nullptr ? scales + blockIdx.x : nullptr, scratch);
}

}  // namespace

cudaError_t LaunchSiluMul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool vector = (reinterpret_cast<uintptr_t>(gate) | reinterpret_cast<uintptr_t>(up) |
                       reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  SiluMulKernel<<<ElementwiseBlocks(n), kElementwiseThreads, 0, stream>>>(gate, up, n, out, vector);
  return cudaGetLastError();
}

cudaError_t LaunchSiluMulQuantize(const float* gate, const float* up, int64_t rows, int cols, QuantFormat format,
                                  int ld, void* codes, float* scales, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  switch (format) {
    case QuantFormat::kE4M3:
      SiluMulQuantizeKernel<QuantFormat::kE4M3><<<rows, kRowThreads, 0, stream>>>(gate, up, cols, ld, codes, scales);
      break;
    case QuantFormat::kInt8:
      SiluMulQuantizeKernel<QuantFormat::kInt8><<<rows, kRowThreads, 0, stream>>>(gate, up, cols, ld, codes, scales);
      break;
    case QuantFormat::kBF16:
      SiluMulQuantizeKernel<QuantFormat::kBF16><<<rows, kRowThreads, 0, stream>>>(gate, up, cols, ld, codes,
                                                                                 nullptr);
      break;
  }
  return cudaGetLastError();
}

}  // namespace qrag::kernels
