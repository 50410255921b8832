// Bidirectional multi-head attention within each sequence of a packed batch (backend.h EncoderAttention):
// sequence s owns rows [seq_offsets[s], seq_offsets[s + 1]) of q, k, v and out, each [tokens,
// n_heads*head_dim]; every token attends to every token of its own sequence, softmax(q k^T / sqrt(head_dim)) v
// per head.
//
// Simple, not fast (a fast encoder path is later work): one block of kEncoderAttentionThreads threads per
// (token, head). The arithmetic is the CPU reference backend's (server/backend/cpu/cpu_encoder_ops.cc), in
// the same order: each score is one thread's double dot product over the head's dims, rounded to float and
// multiplied by the float 1/sqrt(head_dim); the maximum is taken over the float scores; the probabilities
// exp(score - max) / sum are double with the sum taken in position order; each output dim is one thread's
// double sum over positions in order, rounded once to float. Only exp (CUDA's vs glibc's, both within 1 ulp
// of double) differs, so results agree with the CPU's to about float rounding.
#ifndef QRAG_KERNELS_ENCODER_ATTENTION_CUH_
#define QRAG_KERNELS_ENCODER_ATTENTION_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

inline constexpr int kEncoderAttentionThreads = 128;
inline constexpr int kEncoderAttentionMaxHeadDim = 512;
// The probabilities of a row live in shared memory as doubles: 4096 x 8 bytes = 32 KiB.
inline constexpr int kEncoderAttentionMaxSeqLen = 4096;

// q, k, v, out: device rows [tokens, n_heads*head_dim]; seq_offsets: device, num_seqs + 1 >= 2
// non-decreasing ints (checked by the caller); the rows [seq_offsets[0], seq_offsets[num_seqs]) are
// computed. max_seq_len: the longest sequence, at most kEncoderAttentionMaxSeqLen; head_dim in
// [1, kEncoderAttentionMaxHeadDim]. out may be q, but must not alias k or v.
cudaError_t LaunchEncoderAttention(const float* q, const float* k, const float* v, const int32_t* seq_offsets,
                                   int num_seqs, int64_t first_row, int64_t rows, int max_seq_len, int n_heads,
                                   int head_dim, float* out, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_ENCODER_ATTENTION_CUH_
