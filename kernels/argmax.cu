#include "kernels/argmax.cuh"

namespace qrag::kernels {
namespace {

constexpr int kThreads = 256;

// (value, index) with the larger value winning and, on ties, the lower index (the first maximum).
__device__ __forceinline__ void Better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i) || (isnan(v) && !isnan(ov))) {
    v = ov;
    i = oi;
  }
}

__global__ void __launch_bounds__(kThreads) ArgmaxKernel(const float* __restrict__ logits, int vocab, int32_t* ids) {
  __shared__ float sv[kThreads / 32];
  __shared__ int si[kThreads / 32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float v = NAN;
  int idx = 0x7fffffff;
  for (int c = threadIdx.x; c < vocab; c += kThreads) Better(v, idx, row[c], c);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    Better(v, idx, ov, oi);
  }
  if ((threadIdx.x & 31) == 0) {
    sv[threadIdx.x >> 5] = v;
    si[threadIdx.x >> 5] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) Better(v, idx, sv[w], si[w]);
    ids[blockIdx.x] = isnan(v) ? 0 : idx;
  }
}

}  // namespace

cudaError_t LaunchArgmax(const float* logits, int64_t rows, int vocab, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (vocab < 1) return cudaErrorInvalidValue;
  ArgmaxKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, ids);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
