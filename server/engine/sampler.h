// Token sampling: greedy, temperature, top-k, top-p (nucleus), min-p and repetition penalty, driven by a
// seeded xorshift64* generator so a seed reproduces a run exactly.
//
// The order of the steps, and the arithmetic of temperature + top-p, follow llama2.c run.c exactly (its
// `sample`, `sample_topp`, `sample_mult` and `random_f32`), so its published sampled outputs are
// reproduced bit for bit:
//   1. repetition penalty on the logits of tokens already in the history (CTRL / HF convention: a positive
//      logit is divided by the penalty, a negative one multiplied);
//   2. temperature == 0: argmax (the first maximum);
//   3. logits /= temperature; softmax;
//   4. top-k (keep the k most probable), then min-p (drop p < min_p * max p); renormalize if anything was
//      dropped;
//   5. one uniform draw u in [0, 1); top-p in (0, 1): run.c's nucleus sampling; else inverse-CDF sampling.
#ifndef QRAG_SERVER_ENGINE_SAMPLER_H_
#define QRAG_SERVER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace qrag::engine {

struct SamplingParams {
  float temperature = 1.0f;          // 0 = greedy
  float top_p = 1.0f;                // (0, 1]; 1 = off
  int top_k = 0;                     // 0 = off
  float min_p = 0.0f;                // [0, 1]; 0 = off
  float repetition_penalty = 1.0f;   // > 0; 1 = off
  std::optional<uint64_t> seed;      // absent: a fresh random seed
};

// INVALID_ARGUMENT naming the parameter and its allowed range: temperature < 0 or not finite, top_p not in
// (0, 1], top_k < 0, min_p not in [0, 1], repetition_penalty <= 0 or not finite.
absl::Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  // `params` must be valid (ValidateSamplingParams).
  explicit Sampler(const SamplingParams& params);

  // Picks the next token from `logits` (modified in place: scratch). `history` holds the ids seen so far
  // (prompt and generated), used by the repetition penalty.
  int32_t Sample(absl::Span<float> logits, absl::Span<const int32_t> history);

  uint64_t seed() const { return seed_; }

 private:
  float NextUniform();  // run.c random_f32: [0, 1) with 24 random bits

  SamplingParams params_;
  uint64_t seed_;
  uint64_t state_;
  struct Candidate {
    float prob;
    int32_t index;
  };
  std::vector<Candidate> candidates_;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_SAMPLER_H_
