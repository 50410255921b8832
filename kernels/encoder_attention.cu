#include "kernels/encoder_attention.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

constexpr int kThreads = kEncoderAttentionThreads;

// The sequence holding row t: the last s with offsets[s] <= t (offsets[0] <= t < offsets[num_seqs]), which
// skips empty sequences.
__device__ int SequenceOf(const int32_t* offsets, int num_seqs, int64_t t) {
  int lo = 0, hi = num_seqs;  // offsets[lo] <= t < offsets[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (offsets[mid] <= t) lo = mid;
    else hi = mid;
  }
  return lo;
}

// One block per (row, head). `vector`: head_dim % 4 == 0 and k 16-byte aligned, so key rows are read as
// float4. Shared memory: probs [max_seq_len] doubles, then the query [head_dim] floats.
__global__ void __launch_bounds__(kThreads)
    EncoderAttentionKernel(const float* q, const float* __restrict__ k, const float* __restrict__ v,
                           const int32_t* __restrict__ offsets, int num_seqs, int64_t first_row, int max_seq_len,
                           int n_heads, int head_dim, float scale, float* out, bool vector) {
  extern __shared__ double probs[];
  float* qs = reinterpret_cast<float*>(probs + max_seq_len);
  __shared__ float scratch[32];
  __shared__ double sum_shared;

  const int64_t t = first_row + blockIdx.x / n_heads;
  const int h = blockIdx.x % n_heads;
  const int s = SequenceOf(offsets, num_seqs, t);
  const int64_t seq_first = offsets[s];
  const int len = offsets[s + 1] - offsets[s];
  const int64_t stride = static_cast<int64_t>(n_heads) * head_dim;
  const int64_t off = static_cast<int64_t>(h) * head_dim;
  for (int c = threadIdx.x; c < head_dim; c += kThreads) qs[c] = q[t * stride + off + c];
  __syncthreads();

  // Scores: float(double dot) * scale, one thread per position, dims in order (the CPU's arithmetic).
  float local_max = -INFINITY;
  for (int j = threadIdx.x; j < len; j += kThreads) {
    const float* kj = k + (seq_first + j) * stride + off;
    double d = 0.0;
    if (vector) {
      for (int c = 0; c < head_dim; c += 4) {
        const float4 kv = *reinterpret_cast<const float4*>(kj + c);
        d += static_cast<double>(qs[c]) * kv.x;
        d += static_cast<double>(qs[c + 1]) * kv.y;
        d += static_cast<double>(qs[c + 2]) * kv.z;
        d += static_cast<double>(qs[c + 3]) * kv.w;
      }
    } else {
      for (int c = 0; c < head_dim; ++c) d += static_cast<double>(qs[c]) * kj[c];
    }
    const float score = __fmul_rn(static_cast<float>(d), scale);
    probs[j] = score;
    local_max = fmaxf(local_max, score);
  }
  const double max_score = BlockMax(local_max, scratch);  // ends with a barrier: probs are visible
  for (int j = threadIdx.x; j < len; j += kThreads) probs[j] = exp(probs[j] - max_score);
  __syncthreads();
  if (threadIdx.x == 0) {
    // In position order, as the CPU sums; len additions, small next to the len x head_dim dot products.
    double sum = 0.0;
    for (int j = 0; j < len; ++j) sum += probs[j];
    sum_shared = sum;
  }
  __syncthreads();
  const double sum = sum_shared;
  for (int j = threadIdx.x; j < len; j += kThreads) probs[j] = probs[j] / sum;
  __syncthreads();

  // Output: one thread per dim, positions in order (coalesced reads of v across the threads).
  for (int c = threadIdx.x; c < head_dim; c += kThreads) {
    const float* vc = v + seq_first * stride + off + c;
    double acc = 0.0;
    for (int j = 0; j < len; ++j) acc += probs[j] * vc[j * stride];
    out[t * stride + off + c] = static_cast<float>(acc);
  }
}

}  // namespace

cudaError_t LaunchEncoderAttention(const float* q, const float* k, const float* v, const int32_t* seq_offsets,
                                   int num_seqs, int64_t first_row, int64_t rows, int max_seq_len, int n_heads,
                                   int head_dim, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (num_seqs < 1 || rows < 0 || first_row < 0 || max_seq_len < 1 || max_seq_len > kEncoderAttentionMaxSeqLen ||
      n_heads < 1 || head_dim < 1 || head_dim > kEncoderAttentionMaxHeadDim || rows * n_heads > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  const bool vector = head_dim % 4 == 0 && reinterpret_cast<uintptr_t>(k) % 16 == 0;
  const size_t shared = static_cast<size_t>(max_seq_len) * sizeof(double) + head_dim * sizeof(float);
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));
  EncoderAttentionKernel<<<static_cast<unsigned>(rows * n_heads), kThreads, shared, stream>>>(
      q, k, v, seq_offsets, num_seqs, first_row, max_seq_len, n_heads, head_dim, scale, out, vector);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
