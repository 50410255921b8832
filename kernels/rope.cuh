// Rotary position embedding (backend.h Rope): rotates q [tokens, n_heads*head_dim] and k
// [tokens, n_kv_heads*head_dim] in place; pair i of a head rotates by positions[t] * inv_freq[i], pairs
// being (2i, 2i+1) (interleaved, llama2.c / Meta) or (i, i + head_dim/2) (rotate-half, Hugging Face).
#ifndef QRAG_KERNELS_ROPE_CUH_
#define QRAG_KERNELS_ROPE_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

// positions: device int32 [tokens]; inv_freq: device fp32 [head_dim / 2].
cudaError_t LaunchRope(float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads, int n_kv_heads,
                       int head_dim, const float* inv_freq, bool interleaved, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_ROPE_CUH_
