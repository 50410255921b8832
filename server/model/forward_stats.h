// The exact tensor work of one Transformer::Forward step, for the ops-per-watt metrics and for the tensor
// ops a request's response reports.
//
// Every GEMM contributes its 2*M*N*K (backend::GemmStats) under the precision it ran in; attention
// contributes the 2 x multiply-adds of QK^T and PV the backend returns, under fp32 (it runs on fp32
// activations). Each op is counted exactly once per step. The same ops are also split across the sequences
// of the batch: a GEMM's ops per row go to the row's sequence (exact: every row of a GEMM does 2*N*K ops),
// the classifier's to the sequences whose logits were asked for, and attention's in proportion to the keys
// each sequence's tokens attend to (exact for the causal/sliding-window count the backends implement).
// ops_per_sequence therefore sums to total().
#ifndef QRAG_SERVER_MODEL_FORWARD_STATS_H_
#define QRAG_SERVER_MODEL_FORWARD_STATS_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "server/backend/precision.h"

namespace qrag::model {

inline constexpr int kNumPrecisions = static_cast<int>(std::size(backend::kAllPrecisions));

struct ForwardStats {
  std::array<int64_t, kNumPrecisions> ops_by_precision{};  // indexed by backend::Precision
  std::vector<int64_t> ops_per_sequence;                    // indexed like AttentionBatch::sequences

  int64_t total() const;
  // Zeroes the counts, for a batch of `num_sequences` sequences.
  void Reset(int num_sequences);
};

// Splits `total` across parts in proportion to `weights` with integer arithmetic, adding part i's share to
// out[i]. The shares sum to `total` exactly (the rounding remainder goes to the last part with a non-zero
// weight); all-zero weights leave `out` unchanged. out.size() == weights.size().
void AddProportionalShares(int64_t total, absl::Span<const int64_t> weights, absl::Span<int64_t> out);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_FORWARD_STATS_H_
