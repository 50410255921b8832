// The serving engine: many concurrent requests share one model through iteration-level continuous
// batching over a paged KV cache.
//
// Threading: Submit/Cancel/Drain/Stats may be called from any thread. One engine thread runs the loop
// (schedule -> forward -> sample -> detokenize -> notify). Observers are called on the engine thread and
// must not block (a gRPC reactor queues a write and returns).
//
// Lifecycle of a request: Submit validates and tokenizes it on the caller's thread and either fails
// (nothing else happens) or returns an id; from then on the observer receives zero or more OnText calls and
// exactly one OnFinish, also when the request is cancelled, expires, or the engine shuts down.
#ifndef QRAG_SERVER_ENGINE_ENGINE_H_
#define QRAG_SERVER_ENGINE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/engine/engine_observer.h"
#include "server/engine/model_runner.h"
#include "server/engine/output_processor.h"
#include "server/engine/sampler.h"
#include "server/model/tokenizer.h"

namespace qrag::engine {

struct EngineOptions {
  int num_kv_blocks = 0;          // 0: enough for max_running sequences of the full context
  int block_size = 16;
  int context_length = 0;         // per sequence; 0 = min(model's, 4096)
  int max_batch_tokens = 256;     // token budget of one iteration (prefill chunks + decodes)
  int max_running = 16;           // sequences decoding at once
  int max_waiting = 256;          // queued requests; beyond: RESOURCE_EXHAUSTED
  int max_logprobs = 20;          // largest top-N a request may ask for
  // Automatic prefix caching (block_manager.h): a prompt's longest already-computed prefix, in whole KV
  // blocks, is reused instead of recomputed; the output is bit-identical either way.
  bool prefix_cache = true;
};

struct EngineRequest {
  std::string prompt;
  // Set (non-empty): the prompt's token ids exactly as the model is to see them (BOS included when wanted),
  // e.g. a chat template's rendering tokenized with its special tokens; `prompt` is then not tokenized
  // (it may stay empty). Every id must be in the vocabulary (INVALID_ARGUMENT).
  std::vector<int32_t> prompt_ids;
  // Tokens that end this request's generation besides the model's EOS ids (a chat template's end-of-turn
  // token, e.g. <|im_end|>); like EOS, they are not part of the text.
  std::vector<int32_t> extra_stop_ids;
  int max_tokens = 16;
  // Set: max_tokens only caps the answer, which gets at most what the context leaves after the prompt
  // (request_limits.h FitMaxTokens; OpenAI's API without max_tokens). Unset: prompt + max_tokens must fit.
  bool max_tokens_fits_context = false;
  SamplingParams sampling;
  std::vector<std::string> stop;
  int logprobs = 0;  // 0: none; N > 0: the chosen token's logprob and the N most likely alternatives
  absl::Time deadline = absl::InfiniteFuture();
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Metered energy charged to this request: of each iteration it took part in, the share of its tokens
  // (engine_observer.h). 0 without an EnergySource.
  double energy_joules = 0;
  // Exact tensor ops done for this request (model::ForwardStats::ops_per_sequence summed over its steps).
  int64_t tensor_ops = 0;
  // Prompt tokens whose K/V came from the prefix cache instead of being computed (counted in prompt_tokens).
  int cached_prompt_tokens = 0;
};

struct Timings {
  double queue_seconds = 0;               // arrival -> first scheduled
  double time_to_first_token_seconds = 0; // arrival -> first generated token
  double total_seconds = 0;               // arrival -> finish
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // New completion text (complete UTF-8, never part of a stop string) and the tokens that produced it
  // (logprobs filled when requested). Either may be empty.
  virtual void OnText(std::string_view text, absl::Span<const TokenLogprob> tokens) = 0;
  // Exactly once. `status` is OK for a normal finish (then `reason` is kStop or kLength); otherwise
  // CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE (shutdown) or INTERNAL (model failure).
  virtual void OnFinish(const absl::Status& status, FinishReason reason, const Usage& usage,
                        const Timings& timings) = 0;
};

struct EngineStats {
  int waiting = 0;
  int running = 0;
  int kv_blocks_total = 0;
  int kv_blocks_free = 0;    // free, including cached blocks no request references (reclaimable)
  int kv_blocks_cached = 0;  // blocks holding a cached prefix, referenced or not
  int64_t iterations = 0;
  int64_t preemptions = 0;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(ModelRunner* model, const model::Tokenizer* tokenizer,
                                                        const EngineOptions& options, EngineHooks hooks = {});
  ~Engine();  // Drain(0) if still running.

  // Validates and tokenizes. Errors: INVALID_ARGUMENT (empty prompt, invalid UTF-8, max_tokens <= 0 or past
  // the context, bad sampling params, logprobs outside [0, max_logprobs]), OUT_OF_RANGE (prompt longer than
  // the context), RESOURCE_EXHAUSTED (queue full), UNAVAILABLE (draining), DEADLINE_EXCEEDED (already past).
  absl::StatusOr<uint64_t> Submit(EngineRequest request, std::shared_ptr<RequestObserver> observer);

  // Ends a request soon: its observer gets OnFinish(CANCELLED) and its KV blocks return to the pool before
  // the next iteration. Unknown or finished ids are ignored.
  void Cancel(uint64_t id);

  // Stops accepting (Submit -> UNAVAILABLE), lets in-flight requests finish for up to `grace`, then ends
  // the rest with UNAVAILABLE and stops the engine thread. Idempotent.
  void Drain(absl::Duration grace);

  EngineStats Stats() const;
  int context_length() const;
  // The tokenizer prompts are encoded with (to size a prompt before submitting it, as RAG does).
  const model::Tokenizer* tokenizer() const;

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_ENGINE_H_
