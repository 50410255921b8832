#include "server/engine/perplexity.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::engine {

double TokenNll(absl::Span<const float> logits, int32_t target) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l) - max);
  return std::log(z) + max - static_cast<double>(logits[target]);
}

absl::StatusOr<PerplexityResult> ComputePerplexity(model::Transformer& t, absl::Span<const int32_t> tokens,
                                                   const PerplexityOptions& options) {
  const int64_t total = static_cast<int64_t>(tokens.size());
  const int context = t.config().max_seq_len;
  if (total < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("perplexity needs at least 2 tokens, the text has ", total));
  }
  if (options.window < 2 || options.window > context) {
    return absl::InvalidArgumentError(absl::StrCat("perplexity window ", options.window,
                                                   " is outside [2, ", context, "] (the model's context length)"));
  }
  const int window = options.window;
  if (total < window) {
    return absl::InvalidArgumentError(absl::StrCat("the text has ", total, " tokens, fewer than one window of ",
                                                   window, " (use a smaller --ctx)"));
  }
  ScoreOptions score = options.score;
  score.chunk = score.chunk > 0 ? std::min(score.chunk, window) : window;
  const int vocab = t.config().vocab_size;
  PerplexityResult r;
  r.windows = static_cast<int>(total / window);
  r.tokens_dropped = total % window;
  for (int w = 0; w < r.windows; ++w) {
    const absl::Span<const int32_t> win = tokens.subspan(static_cast<size_t>(w) * window, window);
    QRAG_RETURN_IF_ERROR(ScoreSequenceChunks(t, win, score, [&](int begin, int len, const float* logits) {
      // Row i of the chunk predicts token begin + i + 1; the window's last row predicts nothing in it.
      for (int i = 0; i < len && begin + i + 1 < window; ++i) {
        r.sum_nll += TokenNll(absl::MakeConstSpan(logits + static_cast<size_t>(i) * vocab, vocab),
                              win[begin + i + 1]);
      }
      return absl::OkStatus();
    }));
  }
  r.tokens_scored = static_cast<int64_t>(r.windows) * (window - 1);
  r.mean_nll = r.sum_nll / static_cast<double>(r.tokens_scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace qrag::engine
