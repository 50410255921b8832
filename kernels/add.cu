#include "kernels/add.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

// 16-byte accesses for the bulk when x and y are 16-byte aligned, scalar tail.
__global__ void AddKernel(float* x, const float* y, int64_t n, bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n4 = vector ? n / 4 : 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    float4 a = reinterpret_cast<float4*>(x)[i];
    const float4 b = reinterpret_cast<const float4*>(y)[i];
    a.x = __fadd_rn(a.x, b.x);
    a.y = __fadd_rn(a.y, b.y);
    a.z = __fadd_rn(a.z, b.z);
    a.w = __fadd_rn(a.w, b.w);
    reinterpret_cast<float4*>(x)[i] = a;
  }
  for (int64_t i = n4 * 4 + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    x[i] = __fadd_rn(x[i], y[i]);
  }
}

}  // namespace

cudaError_t LaunchAdd(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool vector = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) % 16 == 0;
  AddKernel<<<ElementwiseBlocks(n), kElementwiseThreads, 0, stream>>>(x, y, n, vector);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
