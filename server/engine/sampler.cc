#include "server/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace qrag::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0 (got ", p.temperature, "); 0 = greedy"));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {  // also rejects NaN
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1] (got ", p.top_p, "); 1 = off"));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (got ", p.top_k, "); 0 = off"));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1] (got ", p.min_p, "); 0 = off"));
  }
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("repetition_penalty must be a finite number > 0 (got ",
                                                   p.repetition_penalty, "); 1 = off"));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  if (params.seed.has_value()) {
    seed_ = *params.seed;
  } else {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) | rd();
  }
  // xorshift has a fixed point at 0; map seed 0 to a fixed non-zero state so it is still reproducible.
  state_ = seed_ != 0 ? seed_ : 0x9E3779B97F4A7C15ull;
}

float Sampler::NextUniform() {
  // xorshift64* as in llama2.c run.c random_u32 / random_f32.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const uint32_t r = static_cast<uint32_t>((state_ * 0x2545F4914F6CDD1Dull) >> 32);
  return static_cast<float>(r >> 8) / 16777216.0f;
}

int32_t Sampler::Sample(absl::Span<float> logits, absl::Span<const int32_t> history) {
  const int n = static_cast<int>(logits.size());
  if (params_.repetition_penalty != 1.0f && !history.empty()) {
    absl::flat_hash_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= n) continue;
      float& l = logits[id];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.temperature == 0.0f) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    return best;
  }
  // The greedy choice, for temperatures so small that logits / temperature overflows (below).
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  // run.c: logits /= temperature, then softmax with fp32 sums.
  for (int i = 0; i < n; ++i) logits[i] /= params_.temperature;
  float max_val = logits[0];
  for (int i = 1; i < n; ++i) max_val = std::max(max_val, logits[i]);
  // A tiny temperature (1e-38, 1e-45) or penalty overflows the largest scaled logit to +-inf, and the softmax
  // would turn into NaN (inf - inf). The distribution it stands for is a point mass on the largest logit:
  // sample greedily. Finite scaled logits keep run.c's exact arithmetic.
  if (!std::isfinite(max_val)) return best;
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    logits[i] = std::exp(logits[i] - max_val);
    sum += logits[i];
  }
  for (int i = 0; i < n; ++i) logits[i] /= sum;
  float* probs = logits.data();

  bool filtered = false;
  if (params_.top_k > 0 && params_.top_k < n) {
    // Keep the k largest (ties at the boundary broken by lower index).
    std::vector<int32_t> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::nth_element(order.begin(), order.begin() + params_.top_k, order.end(), [&](int32_t a, int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    for (int i = params_.top_k; i < n; ++i) probs[order[i]] = 0.0f;
    filtered = true;
  }
  if (params_.min_p > 0.0f) {
    float max_p = 0;
    for (int i = 0; i < n; ++i) max_p = std::max(max_p, probs[i]);
    const float threshold = params_.min_p * max_p;
    for (int i = 0; i < n; ++i) {
      if (probs[i] < threshold) probs[i] = 0.0f;
    }
    filtered = true;
  }
  if (filtered) {
    float kept = 0;
    for (int i = 0; i < n; ++i) kept += probs[i];
    for (int i = 0; i < n; ++i) probs[i] /= kept;
  }

  const float coin = NextUniform();
  const float top_p = params_.top_p;
  if (top_p <= 0.0f || top_p >= 1.0f) {
    // run.c sample_mult.
    float cdf = 0;
    for (int i = 0; i < n; ++i) {
      cdf += probs[i];
      if (coin < cdf) return i;
    }
    for (int i = n - 1; i >= 0; --i) {  // rounding: the last token with any mass
      if (probs[i] > 0) return i;
    }
    return n - 1;
  }
  // run.c sample_topp: tokens below (1 - p) / (n - 1) cannot be in the nucleus, so skip them before sorting.
  const float cutoff = (1.0f - top_p) / static_cast<float>(n - 1);
  candidates_.clear();
  for (int i = 0; i < n; ++i) {
    if (probs[i] >= cutoff && probs[i] > 0) candidates_.push_back({probs[i], i});
  }
  // glibc qsort (run.c) is a stable merge sort; stable_sort gives the same order of equal probabilities.
  std::stable_sort(candidates_.begin(), candidates_.end(),
                   [](const Candidate& a, const Candidate& b) { return a.prob > b.prob; });
  const int m = static_cast<int>(candidates_.size());
  if (m == 0) return 0;
  float cumulative = 0;
  int last = m - 1;
  for (int i = 0; i < m; ++i) {
    cumulative += candidates_[i].prob;
    if (cumulative > top_p) {
      last = i;
      break;
    }
  }
  const float r = coin * cumulative;
  float cdf = 0;
  for (int i = 0; i <= last; ++i) {
    cdf += candidates_[i].prob;
    if (r < cdf) return candidates_[i].index;
  }
  return candidates_[last].index;
}

}  // namespace qrag::engine
