// The CUDA backend's encoder (BERT-style) ops: LayerNorm, exact GELU and bidirectional packed attention
// (kernels/layer_norm.cuh, gelu.cuh, encoder_attention.cuh), with the CPU reference's arithmetic.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_check.h"
#include "kernels/encoder_attention.cuh"
#include "kernels/gelu.cuh"
#include "kernels/layer_norm.cuh"
#include "server/backend/cuda/cuda_backend.h"

namespace qrag::backend {
namespace {

// The longest sequence of `seq_offsets`, or an error naming what is wrong with them.
absl::StatusOr<int> CheckEncoderBatch(absl::Span<const int32_t> seq_offsets, const AttentionShape& shape) {
  if (shape.n_kv_heads != shape.n_heads || shape.n_heads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("encoder attention: n_heads (", shape.n_heads,
                                                   ") must be >= 1 and equal n_kv_heads (", shape.n_kv_heads, ")"));
  }
  if (shape.head_dim < 1 || shape.head_dim > kernels::kEncoderAttentionMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("encoder attention: head_dim ", shape.head_dim,
                                                   " is outside [1, ", kernels::kEncoderAttentionMaxHeadDim, "]"));
  }
  if (seq_offsets.empty()) return absl::InvalidArgumentError("encoder attention: seq_offsets is empty");
  if (seq_offsets[0] < 0) {
    return absl::InvalidArgumentError(absl::StrCat("encoder attention: seq_offsets[0] is ", seq_offsets[0]));
  }
  int longest = 0;
  for (size_t s = 0; s + 1 < seq_offsets.size(); ++s) {
    const int64_t len = int64_t{seq_offsets[s + 1]} - seq_offsets[s];
    if (len < 0) {
      return absl::InvalidArgumentError(absl::StrCat("encoder attention: seq_offsets decrease at sequence ", s,
                                                     " (", seq_offsets[s], " then ", seq_offsets[s + 1], ")"));
    }
    if (len > kernels::kEncoderAttentionMaxSeqLen) {
      return absl::InvalidArgumentError(absl::StrCat("encoder attention: sequence ", s, " has ", len,
                                                     " tokens; the CUDA kernel takes at most ",
                                                     kernels::kEncoderAttentionMaxSeqLen));
    }
    longest = std::max(longest, static_cast<int>(len));
  }
  return longest;
}

}  // namespace

void CudaBackend::LayerNorm(const float* x, const float* weight, const float* bias, int rows, int dim, float eps,
                            float* out) {
  if (!error_.ok()) return;
  Record(kernels::CudaStatus(kernels::LaunchLayerNorm(x, weight, bias, rows, dim, eps, out, stream()),
                             "LaunchLayerNorm", __FILE__, __LINE__));
}

void CudaBackend::Gelu(const float* x, int64_t n, float* out) {
  if (!error_.ok()) return;
  Record(kernels::CudaStatus(kernels::LaunchGelu(x, n, out, stream()), "LaunchGelu", __FILE__, __LINE__));
}

int64_t CudaBackend::EncoderAttention(const float* q, const float* k, const float* v,
                                      absl::Span<const int32_t> seq_offsets, const AttentionShape& shape,
                                      float* out) {
  // The CPU backend's count: QK^T and PV over each sequence, 2 ops per multiply-add.
  int64_t ops = 0;
  for (size_t s = 0; s + 1 < seq_offsets.size(); ++s) {
    const int64_t len = seq_offsets[s + 1] - seq_offsets[s];
    ops += 2LL * 2 * len * len * shape.head_dim * shape.n_heads;
  }
  if (!error_.ok()) return ops;
  absl::StatusOr<int> longest = CheckEncoderBatch(seq_offsets, shape);
  if (!longest.ok()) {
    Record(longest.status());
    return ops;
  }
  const int num_seqs = static_cast<int>(seq_offsets.size()) - 1;
  const int64_t rows = num_seqs < 1 ? 0 : int64_t{seq_offsets.back()} - seq_offsets.front();
  if (rows == 0) return ops;
  host_meta_.assign(seq_offsets.begin(), seq_offsets.end());
  absl::StatusOr<const int32_t*> offsets = UploadInts(host_meta_);
  if (!offsets.ok()) {
    Record(offsets.status());
    return ops;
  }
  Record(kernels::CudaStatus(kernels::LaunchEncoderAttention(q, k, v, *offsets, num_seqs, seq_offsets.front(), rows,
                                                             *longest, shape.n_heads, shape.head_dim, out, stream()),
                             "LaunchEncoderAttention", __FILE__, __LINE__));
  return ops;
}

}  // namespace qrag::backend
