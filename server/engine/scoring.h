// Teacher-forced scoring: the logits a model gives at every position of a known token sequence, and the
// comparisons used to judge a quantized model against a reference (top-1 agreement, KL divergence).
#ifndef QRAG_SERVER_ENGINE_SCORING_H_
#define QRAG_SERVER_ENGINE_SCORING_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/model/transformer.h"

namespace qrag::engine {

struct ScoreOptions {
  int chunk = 64;        // tokens per forward step (1 = token by token, as decode)
  int block_size = 16;   // KV-cache block size; blocks are laid out in reverse order on purpose
};

// Runs `tokens` at positions 0.. in a fresh KV cache, one forward step per chunk, and hands each step's
// logits to `sink`: [len][vocab], row r predicts token begin + r + 1. The buffer is reused after `sink`
// returns; an error from `sink` stops the scoring and is returned.
using ScoreSink = std::function<absl::Status(int begin, int len, const float* logits)>;
absl::Status ScoreSequenceChunks(model::Transformer& transformer, absl::Span<const int32_t> tokens,
                                 const ScoreOptions& options, const ScoreSink& sink);

// Runs `tokens` at positions 0.. and returns logits [tokens.size()][vocab] (row i predicts token i + 1).
absl::StatusOr<std::vector<float>> ScoreSequence(model::Transformer& transformer, absl::Span<const int32_t> tokens,
                                                 const ScoreOptions& options);

struct LogitComparison {
  int rows = 0;
  double top1_agreement = 0;  // fraction of rows whose argmax equals the reference's
  double mean_kl = 0;         // mean over rows of KL(softmax(reference) || softmax(test)), in nats
  double max_kl = 0;
  double max_row_relative_error = 0;  // max over rows of max|test - ref| / max|ref|
};

// Compares `test` to `reference`, both [rows][vocab]. Sizes must match (INVALID_ARGUMENT otherwise).
absl::StatusOr<LogitComparison> CompareLogits(absl::Span<const float> reference, absl::Span<const float> test,
                                              int vocab);

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_SCORING_H_
