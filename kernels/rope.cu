#include "kernels/rope.cuh"

namespace qrag::kernels {
namespace {

// One block per token; thread j handles pair j % half of head j / half, over q's heads then k's.
// angle = pos * freq in fp32, then cosf/sinf (the CPU backend's arithmetic; cosf/sinf differ from glibc's
// by at most a couple of ulp).
__global__ void RopeKernel(float* q, float* k, const int32_t* __restrict__ positions, int n_heads, int n_kv_heads,
                           int head_dim, const float* __restrict__ inv_freq, bool interleaved) {
  const int t = blockIdx.x, half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  const int total = (n_heads + n_kv_heads) * half;
  for (int j = threadIdx.x; j < total; j += blockDim.x) {
    const int head = j / half, i = j % half;
    float* base = head < n_heads
                      ? q + (static_cast<int64_t>(t) * n_heads + head) * head_dim
                      : k + (static_cast<int64_t>(t) * n_kv_heads + (head - n_heads)) * head_dim;
    const float angle = __fmul_rn(pos, inv_freq[i]);
    const float c = cosf(angle), s = sinf(angle);
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const float v0 = base[a], v1 = base[b];
    base[a] = __fsub_rn(__fmul_rn(v0, c), __fmul_rn(v1, s));
    base[b] = __fadd_rn(__fmul_rn(v0, s), __fmul_rn(v1, c));
  }
}

}  // namespace

cudaError_t LaunchRope(float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads, int n_kv_heads,
                       int head_dim, const float* inv_freq, bool interleaved, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  RopeKernel<<<tokens, 128, 0, stream>>>(q, k, positions, n_heads, n_kv_heads, head_dim, inv_freq, interleaved);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
