#include "kernels/gelu.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

__device__ __forceinline__ float GeluValue(float x) {
  constexpr double kInvSqrt2 = 0.70710678118654752440;
  return static_cast<float>(x * 0.5 * (1.0 + erf(x * kInvSqrt2)));
}

// 16-byte accesses for the bulk when x and out are 16-byte aligned, scalar tail.
__global__ void GeluKernel(const float* x, int64_t n, float* out, bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n4 = vector ? n / 4 : 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    const float4 v = reinterpret_cast<const float4*>(x)[i];
    reinterpret_cast<float4*>(out)[i] = make_float4(GeluValue(v.x), GeluValue(v.y), GeluValue(v.z), GeluValue(v.w));
  }
  for (int64_t i = n4 * 4 + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    out[i] = GeluValue(x[i]);
  }
}

}  // namespace

cudaError_t LaunchGelu(const float* x, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n < 0) return cudaErrorInvalidValue;
  const bool vector = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  GeluKernel<<<ElementwiseBlocks(n), kElementwiseThreads, 0, stream>>>(x, n, out, vector);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
