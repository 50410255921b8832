#include "server/engine/engine.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/engine/block_manager.h"
#include "server/engine/request_limits.h"
#include "server/engine/scheduler.h"

namespace qrag::engine {

class Engine::Impl {
 public:
  Impl(ModelRunner* model, const model::Tokenizer* tokenizer, const EngineOptions& options, EngineHooks hooks)
      : model_(model),
        tokenizer_(tokenizer),
        options_(options),
        hooks_(hooks),
        blocks_(options.num_kv_blocks, options.block_size, options.prefix_cache),
        scheduler_({.block_size = options.block_size,
                    .max_batch_tokens = options.max_batch_tokens,
                    .max_running = options.max_running},
                   &blocks_) {
    stop_ids_ = tokenizer->eos_ids();
    for (int32_t id : model->eos_ids()) stop_ids_.push_back(id);
    std::sort(stop_ids_.begin(), stop_ids_.end());
    stop_ids_.erase(std::unique(stop_ids_.begin(), stop_ids_.end()), stop_ids_.end());
    stats_.kv_blocks_total = stats_.kv_blocks_free = blocks_.num_total();
    if (hooks_.observer != nullptr) hooks_.observer->OnEngineStats(stats_);
    thread_ = std::thread([this] { Loop(); });
  }

  ~Impl() { Drain(absl::ZeroDuration()); }

  absl::StatusOr<uint64_t> Submit(EngineRequest r, std::shared_ptr<RequestObserver> observer) {
    absl::StatusOr<uint64_t> id = Accept(std::move(r), std::move(observer));
    if (!id.ok() && hooks_.observer != nullptr) hooks_.observer->OnRequestRejected(id.status());
    return id;
  }
  void Cancel(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
    cv_.notify_all();
  }
  void Drain(absl::Duration grace);
  EngineStats Stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  int context_length() const { return options_.context_length; }
  const model::Tokenizer* tokenizer() const { return tokenizer_; }

 private:
  struct Request {
    uint64_t id = 0;
    Sequence seq;
    int prompt_tokens = 0;
    std::unique_ptr<OutputProcessor> output;
    std::shared_ptr<RequestObserver> observer;
    absl::Time arrival, deadline, first_scheduled, first_token, last_token;
    double energy_joules = 0;  // charged so far (engine_observer.h)
    int64_t tensor_ops = 0;
    bool scheduled = false;
    bool has_token = false;
  };

  absl::StatusOr<uint64_t> Accept(EngineRequest r, std::shared_ptr<RequestObserver> observer);
  void Loop();
  // Runs one scheduler iteration; false when there was nothing to run.
  bool Iterate();
  void Finish(Request* r, const absl::Status& status, FinishReason reason);
  void FinishAll(const absl::Status& status);
  void PublishStats();

  ModelRunner* model_;
  const model::Tokenizer* tokenizer_;
  const EngineOptions options_;
  const EngineHooks hooks_;
  std::vector<int32_t> stop_ids_;

  // Shared with callers, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the engine thread
  std::condition_variable idle_cv_;  // wakes Drain when requests finish
  std::deque<std::unique_ptr<Request>> inbox_;
  std::vector<uint64_t> cancels_;
  bool draining_ = false;
  bool abort_ = false;   // Drain's grace is over: end everything and stop
  bool stopped_ = false;
  int queued_ = 0;       // submitted and never scheduled
  int active_ = 0;       // submitted and not finished
  uint64_t next_id_ = 1;
  EngineStats stats_;
  std::thread thread_;

  // Engine thread only.
  BlockManager blocks_;
  Scheduler scheduler_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::vector<float> logits_;
  int64_t iterations_ = 0;
  int64_t preemptions_ = 0;
};

absl::StatusOr<uint64_t> Engine::Impl::Accept(EngineRequest r, std::shared_ptr<RequestObserver> observer) {
  QRAG_RETURN_IF_ERROR(ValidateSamplingParams(r.sampling));
  QRAG_RETURN_IF_ERROR(CheckMaxTokens(r.max_tokens));
  if (r.logprobs < 0 || r.logprobs > options_.max_logprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs must be in [0, ", options_.max_logprobs, "], got ", r.logprobs));
  }
  if (r.prompt.empty() && r.prompt_ids.empty()) {
    return absl::InvalidArgumentError("prompt is empty: give the text to continue");
  }
  const absl::Time now = absl::Now();
  if (r.deadline <= now) return absl::DeadlineExceededError("deadline already passed before the request was queued");
  std::vector<int32_t> ids;
  if (!r.prompt_ids.empty()) {
    QRAG_RETURN_IF_ERROR(CheckPromptIds(r.prompt_ids, tokenizer_->vocab_size()));
    ids = std::move(r.prompt_ids);
  } else {
    QRAG_ASSIGN_OR_RETURN(ids, tokenizer_->Encode(r.prompt, model::EncodeOptions{}));
  }
  const int ctx = options_.context_length;
  const int n = static_cast<int>(ids.size());
  if (r.max_tokens_fits_context) r.max_tokens = FitMaxTokens(r.max_tokens, n, ctx);
  QRAG_RETURN_IF_ERROR(CheckFitsContext(n, r.max_tokens, ctx));
  auto req = std::make_unique<Request>();
  req->prompt_tokens = n;
  req->seq.tokens = ids;
  OutputOptions o;
  o.sampling = r.sampling;
  o.max_tokens = r.max_tokens;
  o.stop = std::move(r.stop);
  o.stop_ids = stop_ids_;
  o.stop_ids.insert(o.stop_ids.end(), r.extra_stop_ids.begin(), r.extra_stop_ids.end());
  o.logprobs = r.logprobs;
  req->output = std::make_unique<OutputProcessor>(tokenizer_, std::move(o), ids);
  req->observer = std::move(observer);
  req->arrival = now;
  req->deadline = r.deadline;

  std::lock_guard<std::mutex> lock(mu_);
  if (draining_ || stopped_) return absl::UnavailableError("server is shutting down; retry on another replica");
  if (queued_ >= options_.max_waiting) {
    return absl::ResourceExhaustedError(absl::StrCat("request queue is full (", options_.max_waiting,
                                                     " waiting); retry later"));
  }
  req->id = next_id_++;
  req->seq.id = req->id;
  const uint64_t id = req->id;
  ++queued_;
  ++active_;
  inbox_.push_back(std::move(req));
  cv_.notify_all();
  return id;
}

void Engine::Impl::Drain(absl::Duration grace) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopped_) return;
  draining_ = true;
  idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(grace), [&] { return active_ == 0; });
  abort_ = true;
  cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
  lock.lock();
  stopped_ = true;
}

void Engine::Impl::Finish(Request* r, const absl::Status& status, FinishReason reason) {
  const absl::Time now = absl::Now();
  Usage usage{r->prompt_tokens, r->output->generated(), r->energy_joules, r->tensor_ops,
              std::min(r->seq.cached_tokens, r->prompt_tokens)};
  Timings t;
  t.queue_seconds = absl::ToDoubleSeconds((r->scheduled ? r->first_scheduled : now) - r->arrival);
  t.time_to_first_token_seconds = r->has_token ? absl::ToDoubleSeconds(r->first_token - r->arrival) : 0;
  t.total_seconds = absl::ToDoubleSeconds(now - r->arrival);
  // The sequence leaves the scheduler (its KV blocks freed), the metrics record it and the stats are published
  // before the client hears the end: a caller that reads Stats() or scrapes the metrics after its call ended,
  // or once running is back to 0, sees the request finished and counted.
  scheduler_.Remove(&r->seq);
  if (hooks_.observer != nullptr) hooks_.observer->OnRequestFinished(status, usage, t);
  PublishStats();
  r->observer->OnFinish(status, reason, usage, t);
  const bool was_queued = !r->scheduled;
  requests_.erase(r->id);
  std::lock_guard<std::mutex> lock(mu_);
  if (was_queued) --queued_;
  --active_;
  idle_cv_.notify_all();
}

void Engine::Impl::FinishAll(const absl::Status& status) {
  std::vector<Request*> all;
  for (auto& [id, r] : requests_) all.push_back(r.get());
  for (Request* r : all) Finish(r, status, FinishReason::kLength);
}

void Engine::Impl::PublishStats() {
  EngineStats copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.waiting = static_cast<int>(scheduler_.waiting().size() + inbox_.size());
    stats_.running = static_cast<int>(scheduler_.running().size());
    stats_.kv_blocks_free = blocks_.num_free();
    stats_.kv_blocks_cached = blocks_.num_cached();
    stats_.iterations = iterations_;
    stats_.preemptions = preemptions_;
    copy = stats_;
  }
  if (hooks_.observer != nullptr) hooks_.observer->OnEngineStats(copy);
}

void Engine::Impl::Loop() {
  while (true) {
    std::deque<std::unique_ptr<Request>> incoming;
    std::vector<uint64_t> cancels;
    bool abort;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return abort_ || !inbox_.empty() || !cancels_.empty() || !requests_.empty(); });
      incoming.swap(inbox_);
      cancels.swap(cancels_);
      abort = abort_;
    }
    for (auto& r : incoming) {
      scheduler_.Enqueue(&r->seq);
      const uint64_t id = r->id;
      requests_[id] = std::move(r);
    }
    const absl::Time cancelled_at = absl::Now();
    for (uint64_t id : cancels) {
      if (auto it = requests_.find(id); it != requests_.end()) {
        // A cancellation at (or just before) the deadline is the deadline, and is counted as such: clients
        // see DEADLINE_EXCEEDED (request_limits.h).
        Finish(it->second.get(),
               CancellationStatus(it->second->deadline, cancelled_at,
                                  it->second->scheduled ? "while generating" : "while waiting in the queue"),
               FinishReason::kLength);
      }
    }
    if (abort) {
      FinishAll(absl::UnavailableError("server shut down before the request finished"));
      PublishStats();
      return;
    }
    const absl::Time now = absl::Now();
    std::vector<Request*> expired;
    for (auto& [id, r] : requests_) {
      if (r->deadline <= now) expired.push_back(r.get());
    }
    for (Request* r : expired) {
      Finish(r, absl::DeadlineExceededError(r->scheduled ? "deadline exceeded while generating"
                                                         : "deadline exceeded while waiting in the queue"),
             FinishReason::kLength);
    }
    if (!requests_.empty()) Iterate();
    PublishStats();
  }
}

bool Engine::Impl::Iterate() {
  SchedulerOutput out = scheduler_.Schedule();
  preemptions_ += static_cast<int64_t>(out.preempted.size());
  if (out.chunks.empty()) return false;
  ++iterations_;
  const absl::Time start = absl::Now();
  const double joules_at_start = hooks_.energy != nullptr ? hooks_.energy->CumulativeJoules() : 0;

  IterationFacts facts;
  facts.start = start;
  facts.batch_size = static_cast<int>(out.chunks.size());
  facts.prefix_queried_tokens = out.prefix_queried_tokens;
  facts.prefix_hit_tokens = out.prefix_hit_tokens;
  std::vector<int32_t> tokens, positions, token_seq, logits_rows;
  std::vector<backend::AttentionBatch::Sequence> sequences;
  std::vector<Request*> sampling;
  std::vector<Request*> in_batch;  // one per chunk, in chunk (= sequence index) order
  tokens.reserve(out.num_tokens);
  for (const ScheduledChunk& c : out.chunks) {
    Request* r = requests_.at(c.seq->id).get();
    in_batch.push_back(r);
    if (!r->scheduled) {
      r->scheduled = true;
      r->first_scheduled = start;
      std::lock_guard<std::mutex> lock(mu_);
      --queued_;
    }
    const bool decode = c.length == 1 && c.samples && c.start >= r->prompt_tokens;
    (decode ? facts.decode_tokens : facts.prefill_tokens) += c.length;
    const int seq_index = static_cast<int>(sequences.size());
    sequences.push_back({absl::MakeConstSpan(c.seq->block_table)});
    for (int i = 0; i < c.length; ++i) {
      tokens.push_back(c.seq->tokens[c.start + i]);
      positions.push_back(c.start + i);
      token_seq.push_back(seq_index);
    }
    if (c.samples) {
      logits_rows.push_back(static_cast<int32_t>(tokens.size()) - 1);
      sampling.push_back(r);
    }
  }
  backend::AttentionBatch batch;
  batch.positions = positions;
  batch.token_seq = token_seq;
  batch.sequences = sequences;
  batch.block_size = options_.block_size;
  const int vocab = model_->vocab_size();
  logits_.resize(static_cast<size_t>(logits_rows.size()) * vocab);
  absl::Status s = model_->Forward(tokens, batch, logits_rows, logits_.data());

  // Requests to report finished once the iteration's energy and ops are charged to them.
  std::vector<std::pair<Request*, absl::Status>> finished;
  std::vector<FinishReason> reasons;
  std::vector<double> gaps;
  if (!s.ok()) {
    // Nothing in the batch can continue; the requests end with the model's error, the engine goes on.
    for (Request* r : in_batch) {
      finished.emplace_back(r, absl::InternalError(absl::StrCat("model step failed: ", s.message())));
      reasons.push_back(FinishReason::kLength);
    }
  } else {
    if (const model::ForwardStats* ops = model_->last_forward(); ops != nullptr) {
      facts.ops_by_precision = ops->ops_by_precision;
      for (size_t i = 0; i < in_batch.size() && i < ops->ops_per_sequence.size(); ++i) {
        in_batch[i]->tensor_ops += ops->ops_per_sequence[i];
      }
    }
    for (const ScheduledChunk& c : out.chunks) scheduler_.Advance(c);
    const absl::Time done = absl::Now();
    for (size_t j = 0; j < sampling.size(); ++j) {
      Request* r = sampling[j];
      absl::StatusOr<OutputProcessor::Step> step =
          r->output->Next(absl::MakeSpan(logits_.data() + j * vocab, vocab));
      if (!step.ok()) {
        finished.emplace_back(r, step.status());
        reasons.push_back(FinishReason::kLength);
        continue;
      }
      if (step->appended) {
        r->seq.tokens.push_back(step->token);
        ++facts.generated_tokens;
        if (!r->has_token) {
          r->has_token = true;
          r->first_token = done;
        } else {
          gaps.push_back(absl::ToDoubleSeconds(done - r->last_token));
        }
        r->last_token = done;
      }
      if (!step->text.empty() || step->appended) {
        const bool with_logprob = step->appended && !step->logprob.top.empty();
        r->observer->OnText(step->text, with_logprob ? absl::MakeConstSpan(&step->logprob, 1)
                                                     : absl::Span<const TokenLogprob>());
      }
      if (step->finished) {
        finished.emplace_back(r, absl::OkStatus());
        reasons.push_back(step->reason);
      }
    }
  }

  // The iteration's metered energy, split across its requests by tokens processed; the shares sum to it.
  facts.end = absl::Now();
  if (hooks_.energy != nullptr) {
    facts.joules = std::max(0.0, hooks_.energy->CumulativeJoules() - joules_at_start);
    const double total_tokens = static_cast<double>(tokens.size());
    for (size_t i = 0; i < in_batch.size(); ++i) {
      in_batch[i]->energy_joules += facts.joules * out.chunks[i].length / total_tokens;
    }
  }
  facts.inter_token_seconds = gaps;
  if (hooks_.observer != nullptr) hooks_.observer->OnIteration(facts);
  for (size_t i = 0; i < finished.size(); ++i) Finish(finished[i].first, finished[i].second, reasons[i]);
  return true;
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(ModelRunner* model, const model::Tokenizer* tokenizer,
                                                       const EngineOptions& options, EngineHooks hooks) {
  EngineOptions o = options;
  const int model_ctx = model->max_seq_len();
  if (o.context_length < 0) return absl::InvalidArgumentError("context_length must be >= 0");
  if (o.context_length == 0) o.context_length = std::min(model_ctx, 4096);
  if (o.context_length > model_ctx) {
    return absl::InvalidArgumentError(
        absl::StrCat("context length ", o.context_length, " exceeds the model's maximum ", model_ctx));
  }
  if (o.block_size <= 0 || o.max_running <= 0 || o.max_waiting <= 0 || o.max_logprobs < 0) {
    return absl::InvalidArgumentError("block_size, max_running and max_waiting must be positive");
  }
  if (o.max_batch_tokens < o.max_running) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch_tokens (", o.max_batch_tokens,
                                                   ") must be at least max_running (", o.max_running,
                                                   ") so every running sequence decodes each iteration"));
  }
  const int per_sequence = BlocksFor(o.context_length + 1, o.block_size);
  if (o.num_kv_blocks == 0) o.num_kv_blocks = per_sequence * o.max_running;
  if (o.num_kv_blocks < per_sequence) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache of ", o.num_kv_blocks, " blocks cannot hold one sequence of ",
                                                   o.context_length, " tokens (needs ", per_sequence, ")"));
  }
  if (tokenizer->vocab_size() > model->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", tokenizer->vocab_size(),
                                                   " tokens but the model only ", model->vocab_size()));
  }
  QRAG_RETURN_IF_ERROR(model->AllocateCache(o.num_kv_blocks, o.block_size));
  return std::unique_ptr<Engine>(new Engine(std::make_unique<Impl>(model, tokenizer, o, hooks)));
}

absl::StatusOr<uint64_t> Engine::Submit(EngineRequest request, std::shared_ptr<RequestObserver> observer) {
  return impl_->Submit(std::move(request), std::move(observer));
}
void Engine::Cancel(uint64_t id) { impl_->Cancel(id); }
void Engine::Drain(absl::Duration grace) { impl_->Drain(grace); }
EngineStats Engine::Stats() const { return impl_->Stats(); }
int Engine::context_length() const { return impl_->context_length(); }
const model::Tokenizer* Engine::tokenizer() const { return impl_->tokenizer(); }

}  // namespace qrag::engine
