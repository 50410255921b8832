// Single-sequence generation: tokenize -> prefill (in chunks) -> sample/decode loop -> detokenize, with
// stop conditions (EOS ids, stop strings, max_tokens). Used by qrag-run for offline generation and by
// tests; the server's continuous-batching scheduler drives the same Transformer for many sequences.
//
// Not thread-safe: one Generate at a time per Generator (it owns one KV cache).
#ifndef QRAG_SERVER_ENGINE_GENERATOR_H_
#define QRAG_SERVER_ENGINE_GENERATOR_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/output_processor.h"
#include "server/engine/sampler.h"
#include "server/model/kv_cache.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"

namespace qrag::engine {

struct GeneratorOptions {
  int context_length = 0;   // positions served (prompt + generated); 0 = min(model's, 4096)
  int prefill_chunk = 256;  // prompt tokens per forward step
  int block_size = 16;
};

struct GenerateRequest {
  std::string prompt;  // may be empty when the tokenizer has a BOS: generation then starts from BOS alone
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;  // generation ends before the first occurrence of any of these
  // As engine.h's EngineRequest: the prompt's token ids when set (then `prompt` is not tokenized), and stop
  // tokens besides EOS (a chat template's end of turn).
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> extra_stop_ids;
};

struct GenerateResult {
  std::string text;  // the completion only
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  FinishReason finish_reason = FinishReason::kLength;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first generated token to the last
  uint64_t seed = 0;
};

// Receives completion text as it is produced (complete UTF-8, stop strings never included).
using TextCallback = std::function<void(std::string_view)>;

class Generator {
 public:
  static absl::StatusOr<std::unique_ptr<Generator>> Create(model::Transformer* transformer,
                                                           const model::Tokenizer* tokenizer,
                                                           const GeneratorOptions& options);

  // Errors: INVALID_ARGUMENT (bad sampling params, max_tokens <= 0, empty prompt without BOS, invalid UTF-8,
  // prompt + max_tokens past the context), OUT_OF_RANGE (the prompt alone does not fit the context).
  absl::StatusOr<GenerateResult> Generate(const GenerateRequest& request, const TextCallback& on_text);

  int context_length() const { return options_.context_length; }

 private:
  Generator(model::Transformer* transformer, const model::Tokenizer* tokenizer, const GeneratorOptions& options,
            model::KvCache cache);

  model::Transformer* transformer_;
  const model::Tokenizer* tokenizer_;
  GeneratorOptions options_;
  model::KvCache cache_;
  std::vector<int32_t> block_table_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_GENERATOR_H_
