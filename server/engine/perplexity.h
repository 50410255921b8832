// Perplexity of a model on a token sequence, defined as llama.cpp's `perplexity` tool windows it (but
// scoring every position of a window, not only its second half):
//
//   The sequence is cut into W = floor(T / N) consecutive, non-overlapping windows of N tokens; a final
//   partial window (T mod N tokens) is dropped, as llama.cpp drops it. Each window is run on its own from
//   position 0 (a fresh KV cache, no BOS inserted) and every token of it after the first is scored:
//   nll_i = -log softmax(logits(tokens < i of the window))[token_i] for i = 1 .. N - 1, computed in double
//   from the fp32 logits (log-sum-exp with the row maximum subtracted).
//   mean NLL = sum of nll_i / (W * (N - 1)) in nats; perplexity = exp(mean NLL).
#ifndef QRAG_SERVER_ENGINE_PERPLEXITY_H_
#define QRAG_SERVER_ENGINE_PERPLEXITY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/engine/scoring.h"
#include "server/model/transformer.h"

namespace qrag::engine {

struct PerplexityOptions {
  int window = 512;  // N, in [2, the model's context length]
  // How each window runs; chunk is capped at the window (0 here: the whole window in one forward step).
  ScoreOptions score = [] {
    ScoreOptions s;
    s.chunk = 0;
    return s;
  }();
};

struct PerplexityResult {
  int windows = 0;               // W
  int64_t tokens_scored = 0;     // W * (N - 1)
  int64_t tokens_dropped = 0;    // the final partial window, T mod N
  double sum_nll = 0;            // nats
  double mean_nll = 0;           // sum_nll / tokens_scored
  double perplexity = 0;         // exp(mean_nll)
};

// -log softmax(logits)[target] in double (log-sum-exp with the maximum subtracted). `target` must be in
// [0, logits.size()).
double TokenNll(absl::Span<const float> logits, int32_t target);

// INVALID_ARGUMENT for fewer than 2 tokens, a window outside [2, the model's context length], or fewer
// tokens than one window (naming both counts); otherwise the errors of the forward pass.
absl::StatusOr<PerplexityResult> ComputePerplexity(model::Transformer& transformer,
                                                   absl::Span<const int32_t> tokens,
                                                   const PerplexityOptions& options);

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_PERPLEXITY_H_
