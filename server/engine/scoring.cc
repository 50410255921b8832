#include "server/engine/scoring.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::engine {

absl::Status ScoreSequenceChunks(model::Transformer& t, absl::Span<const int32_t> tokens,
                                 const ScoreOptions& options, const ScoreSink& sink) {
  if (options.chunk <= 0 || options.block_size <= 0) {
    return absl::InvalidArgumentError("chunk and block_size must be positive");
  }
  const int n = static_cast<int>(tokens.size());
  model::KvCacheOptions kv;
  kv.block_size = options.block_size;
  kv.num_blocks = std::max(1, model::KvCache::BlocksFor(n, options.block_size));
  QRAG_ASSIGN_OR_RETURN(model::KvCache cache, model::KvCache::Create(t.backend(), t.config(), kv));
  std::vector<int32_t> table(kv.num_blocks);
  for (int i = 0; i < kv.num_blocks; ++i) table[i] = kv.num_blocks - 1 - i;
  const backend::AttentionBatch::Sequence seq{table};
  const int vocab = t.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(std::min(n, options.chunk)) * vocab);
  std::vector<int32_t> pos, seqs, rows;
  for (int begin = 0; begin < n; begin += options.chunk) {
    const int len = std::min(options.chunk, n - begin);
    pos.resize(len);
    rows.resize(len);
    seqs.assign(len, 0);
    for (int i = 0; i < len; ++i) {
      pos[i] = begin + i;
      rows[i] = i;
    }
    backend::AttentionBatch batch;
    batch.positions = pos;
    batch.token_seq = seqs;
    batch.sequences = absl::MakeConstSpan(&seq, 1);
    batch.block_size = options.block_size;
    batch.sliding_window = t.config().sliding_window;
    QRAG_RETURN_IF_ERROR(t.Forward(tokens.subspan(begin, len), batch, rows, cache, logits.data()));
    QRAG_RETURN_IF_ERROR(sink(begin, len, logits.data()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> ScoreSequence(model::Transformer& t, absl::Span<const int32_t> tokens,
                                                 const ScoreOptions& options) {
  const size_t vocab = static_cast<size_t>(t.config().vocab_size);
  std::vector<float> logits(tokens.size() * vocab);
  QRAG_RETURN_IF_ERROR(ScoreSequenceChunks(t, tokens, options, [&](int begin, int len, const float* chunk) {
    std::copy_n(chunk, static_cast<size_t>(len) * vocab, logits.data() + static_cast<size_t>(begin) * vocab);
    return absl::OkStatus();
  }));
  return logits;
}

absl::StatusOr<LogitComparison> CompareLogits(absl::Span<const float> reference, absl::Span<const float> test,
                                              int vocab) {
  if (vocab <= 0 || reference.size() != test.size() || reference.size() % vocab != 0) {
    return absl::InvalidArgumentError(absl::StrCat("logit arrays of ", reference.size(), " and ", test.size(),
                                                   " values do not form rows of ", vocab));
  }
  LogitComparison c;
  c.rows = static_cast<int>(reference.size() / vocab);
  int agree = 0;
  double kl_sum = 0;
  for (int r = 0; r < c.rows; ++r) {
    const float* g = reference.data() + static_cast<size_t>(r) * vocab;
    const float* q = test.data() + static_cast<size_t>(r) * vocab;
    const int ag = static_cast<int>(std::max_element(g, g + vocab) - g);
    const int aq = static_cast<int>(std::max_element(q, q + vocab) - q);
    agree += ag == aq;
    const double mg = g[ag], mq = q[aq];
    double zg = 0, zq = 0, diff = 0, scale = 0;
    for (int i = 0; i < vocab; ++i) {
      zg += std::exp(g[i] - mg);
      zq += std::exp(q[i] - mq);
      diff = std::max(diff, std::abs(static_cast<double>(q[i]) - g[i]));
      scale = std::max(scale, std::abs(static_cast<double>(g[i])));
    }
    const double lzg = std::log(zg), lzq = std::log(zq);
    double kl = 0;
    for (int i = 0; i < vocab; ++i) {
      const double lp = g[i] - mg - lzg, lq = q[i] - mq - lzq;
      kl += std::exp(lp) * (lp - lq);
    }
    kl_sum += kl;
    c.max_kl = std::max(c.max_kl, kl);
    c.max_row_relative_error = std::max(c.max_row_relative_error, scale > 0 ? diff / scale : diff);
  }
  c.top1_agreement = c.rows ? static_cast<double>(agree) / c.rows : 0;
  c.mean_kl = c.rows ? kl_sum / c.rows : 0;
  return c;
}

}  // namespace qrag::engine
