#include "kernels/embed.cuh"

namespace qrag::kernels {
namespace {

__global__ void EmbedKernel(const float* __restrict__ table, int dim, const int32_t* __restrict__ tokens,
                            float* __restrict__ out, bool vector) {
  const float* src = table + static_cast<int64_t>(tokens[blockIdx.x]) * dim;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * dim;
  if (vector) {  // aligned bases and dim % 4 == 0: every row is 16-byte aligned
    for (int c = threadIdx.x; c < dim / 4; c += blockDim.x) {
      reinterpret_cast<float4*>(dst)[c] = reinterpret_cast<const float4*>(src)[c];
    }
  } else {
    for (int c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = src[c];
  }
}

}  // namespace

cudaError_t LaunchEmbed(const float* table, int dim, const int32_t* tokens, int64_t n_tokens, float* out,
                        cudaStream_t stream) {
  if (n_tokens == 0) return cudaSuccess;
  const bool vector =
      dim % 4 == 0 && (reinterpret_cast<uintptr_t>(table) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  EmbedKernel<<<n_tokens, 128, 0, stream>>>(table, dim, tokens, out, vector);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
