// Turns one sequence's logits into output: sampling, stop tokens, max_tokens, incremental detokenization,
// stop strings and logprobs. Shared by the single-sequence Generator and the batching Engine, so a request
// produces the same text through either.
#ifndef QRAG_SERVER_ENGINE_OUTPUT_PROCESSOR_H_
#define QRAG_SERVER_ENGINE_OUTPUT_PROCESSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/engine/sampler.h"
#include "server/model/tokenizer.h"

namespace qrag::engine {

enum class FinishReason { kLength, kStop };
const char* FinishReasonName(FinishReason reason);

struct TokenLogprob {
  int32_t token = 0;
  std::string text;  // the token's own bytes (may be a partial UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // (token, logprob), most likely first
};

struct OutputOptions {
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;      // stop strings: output ends before the first occurrence
  std::vector<int32_t> stop_ids;      // tokens that end generation (not part of the output)
  int logprobs = 0;                   // 0: none; N: the chosen token's logprob and the top N
};

class OutputProcessor {
 public:
  // `prompt_ids` give the detokenizer context (the prompt's text is never returned).
  OutputProcessor(const model::Tokenizer* tokenizer, OutputOptions options, absl::Span<const int32_t> prompt_ids);

  struct Step {
    int32_t token = -1;      // the sampled token (also when it is a stop id)
    bool appended = false;   // the token became part of the output (false for a stop id)
    std::string text;        // new completion text released by this step
    bool finished = false;
    FinishReason reason = FinishReason::kLength;
    TokenLogprob logprob;    // filled when OutputOptions::logprobs > 0 and appended
  };

  // Samples from `logits` (scratch: modified) and advances. Must not be called after a finished step.
  absl::StatusOr<Step> Next(absl::Span<float> logits);

  int generated() const { return generated_; }
  uint64_t seed() const { return sampler_.seed(); }

 private:
  std::string ReleaseText(const std::string& piece, bool* stopped);

  const model::Tokenizer* tokenizer_;
  OutputOptions options_;
  Sampler sampler_;
  model::IncrementalDecoder decoder_;
  std::vector<int32_t> history_;  // prompt + generated, for the repetition penalty
  std::string pending_;           // text held back: might start a stop string
  int generated_ = 0;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_OUTPUT_PROCESSOR_H_
