#include "server/model/forward_stats.h"

#include <algorithm>

#include "server/common/status.h"

namespace qrag::model {

int64_t ForwardStats::total() const {
  int64_t t = 0;
  for (int64_t v : ops_by_precision) t += v;
  return t;
}

void ForwardStats::Reset(int num_sequences) {
  ops_by_precision.fill(0);
  ops_per_sequence.assign(static_cast<size_t>(num_sequences), 0);
}

void AddProportionalShares(int64_t total, absl::Span<const int64_t> weights, absl::Span<int64_t> out) {
  QRAG_CHECK(weights.size() == out.size());
  __int128 sum = 0;
  int last = -1;
  for (size_t i = 0; i < weights.size(); ++i) {
    QRAG_CHECK(weights[i] >= 0);
    sum += weights[i];
    if (weights[i] > 0) last = static_cast<int>(i);
  }
  if (last < 0) return;
  int64_t given = 0;
  for (int i = 0; i < last; ++i) {
    const int64_t share = static_cast<int64_t>(static_cast<__int128>(total) * weights[i] / sum);
    out[i] += share;
    given += share;
  }
  out[last] += total - given;
}

}  // namespace qrag::model
