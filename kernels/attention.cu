#include "kernels/attention.cuh"

#include "kernels/device_util.cuh"
#include "kernels/paged_slot.cuh"

namespace qrag::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kDimsPerThread = kAttentionMaxHeadDim / kThreads;

__global__ void __launch_bounds__(kThreads) AttentionKernel(const float* __restrict__ q, PagedKvView cache,
                                                            PagedBatchView batch, int n_heads, int n_kv_heads,
                                                            int head_dim, float scale, float* __restrict__ out) {
  extern __shared__ int64_t smem[];
  int64_t* slots = smem;                                // [kThreads] cache rows of the chunk
  float* qs = reinterpret_cast<float*>(slots + kThreads);  // [head_dim]
  float* ps = qs + head_dim;                            // [kThreads] probabilities of the chunk
  __shared__ float scratch[32];

  const int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
  const int seq = batch.token_seq[t];
  const int32_t pos = batch.positions[t];
  const int32_t start = batch.sliding_window > 0 ? max(0, pos - batch.sliding_window + 1) : 0;
  const int len = pos - start + 1;
  const int64_t kv_stride = static_cast<int64_t>(n_kv_heads) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / (n_heads / n_kv_heads)) * head_dim;
  const float* qh = q + (static_cast<int64_t>(t) * n_heads + h) * head_dim;
  for (int j = threadIdx.x; j < head_dim; j += kThreads) qs[j] = qh[j];
  __syncthreads();

  float acc[kDimsPerThread];
#pragma unroll
  for (int d = 0; d < kDimsPerThread; ++d) acc[d] = 0.0f;
  float run_max = -INFINITY, run_sum = 0.0f;

  for (int c0 = 0; c0 < len; c0 += kThreads) {
    const int i = c0 + threadIdx.x;
    float s = -INFINITY;
    if (i < len) {
      const int64_t slot = PagedSlot(batch, seq, start + i);
      slots[threadIdx.x] = slot;
      const float* kh = cache.k + slot * kv_stride + kv_off;
      float dot = 0.0f;
      for (int j = 0; j < head_dim; ++j) dot = __fmaf_rn(qs[j], kh[j], dot);
      s = __fmul_rn(dot, scale);
    }
    const float new_max = fmaxf(run_max, BlockMax(s, scratch));
    const float p = i < len ? expf(s - new_max) : 0.0f;
    ps[threadIdx.x] = p;
    const float chunk_sum = BlockSum(p, scratch);  // ends with a barrier: ps and slots are visible
    const float correction = expf(run_max - new_max);  // 0 on the first chunk (run_max = -inf)
    run_sum = run_sum * correction + chunk_sum;
    const int chunk = min(kThreads, len - c0);
#pragma unroll
    for (int d = 0; d < kDimsPerThread; ++d) {
      const int j = threadIdx.x + d * kThreads;
      if (j < head_dim) {
        float a = acc[d] * correction;
        for (int ii = 0; ii < chunk; ++ii) a = __fmaf_rn(ps[ii], cache.v[slots[ii] * kv_stride + kv_off + j], a);
        acc[d] = a;
      }
    }
    run_max = new_max;
    __syncthreads();  // before the next chunk overwrites ps and slots
  }
  float* oh = out + (static_cast<int64_t>(t) * n_heads + h) * head_dim;
  const float inv = 1.0f / run_sum;
#pragma unroll
  for (int d = 0; d < kDimsPerThread; ++d) {
    const int j = threadIdx.x + d * kThreads;
    if (j < head_dim) oh[j] = acc[d] * inv;
  }
}

}  // namespace

cudaError_t LaunchAttention(const float* q, const PagedKvView& cache, const PagedBatchView& batch, int n_heads,
                            int n_kv_heads, int head_dim, float* out, cudaStream_t stream) {
  if (batch.tokens == 0) return cudaSuccess;
  if (head_dim < 1 || head_dim > kAttentionMaxHeadDim || n_kv_heads < 1 || n_heads % n_kv_heads != 0) {
    return cudaErrorInvalidValue;
  }
  const size_t shared = (head_dim + kThreads) * sizeof(float) + kThreads * sizeof(int64_t);
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));
  AttentionKernel<<<static_cast<unsigned>(batch.tokens * n_heads), kThreads, shared, stream>>>(
      q, cache, batch, n_heads, n_kv_heads, head_dim, scale, out);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
