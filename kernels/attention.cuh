// Causal grouped-query attention over the paged KV cache, for prefill chunks and decode steps alike
// (backend.h Attention): each token attends to its sequence's positions [start, pos], start = 0 or, with a
// sliding window w, max(0, pos - w + 1); head h reads kv head h / (n_heads / n_kv_heads).
//
// Simple and exact in structure, not fast (the fast kernel is the next issue): one block of 128 threads per
// (token, head); scores of 128 positions at a time, an online softmax (running max and sum, FlashAttention's
// rescaling) so that memory does not grow with the context; fp32 throughout.
#ifndef QRAG_KERNELS_ATTENTION_CUH_
#define QRAG_KERNELS_ATTENTION_CUH_

#include <cuda_runtime.h>

#include "kernels/paged_batch.h"

namespace qrag::kernels {

inline constexpr int kAttentionMaxHeadDim = 512;

// q, out: [tokens, n_heads*head_dim]. head_dim <= kAttentionMaxHeadDim, n_heads % n_kv_heads == 0.
cudaError_t LaunchAttention(const float* q, const PagedKvView& cache, const PagedBatchView& batch, int n_heads,
                            int n_kv_heads, int head_dim, float* out, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_ATTENTION_CUH_
