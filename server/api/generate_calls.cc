#include "server/api/generate_calls.h"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "qrag/v1/inference.grpc.pb.h"
#include "server/api/chat_generation.h"
#include "server/api/rag_generation.h"
#include "server/api/status_mapping.h"
#include "server/api/validation.h"
#include "server/api/wire.h"
#include "server/engine/request_limits.h"
#include "server/common/status.h"

namespace qrag::api {
namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point d = context.deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

void AddLogprobs(absl::Span<const engine::TokenLogprob> tokens,
                 google::protobuf::RepeatedPtrField<qrag::v1::TokenLogprob>* out) {
  for (const engine::TokenLogprob& t : tokens) {
    qrag::v1::TokenLogprob* p = out->Add();
    p->set_token_id(t.token);
    p->set_token(t.text);
    p->set_logprob(t.logprob);
    for (const auto& [id, logprob] : t.top) {
      qrag::v1::TopLogprob* top = p->add_top_logprobs();
      top->set_token_id(id);
      top->set_logprob(logprob);
    }
  }
}

void FillUsage(const engine::Usage& usage, qrag::v1::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_completion_tokens(usage.completion_tokens);
  out->set_energy_joules(usage.energy_joules);
  out->set_tensor_ops(usage.tensor_ops);
  out->set_cached_prompt_tokens(usage.cached_prompt_tokens);
}

void FillTimings(const engine::Timings& t, qrag::v1::Timings* out) {
  out->set_queue_seconds(t.queue_seconds);
  out->set_time_to_first_token_seconds(t.time_to_first_token_seconds);
  out->set_total_seconds(t.total_seconds);
}

// The engine's observer: forwards to the call, which outlives it in use (see generate_calls.h).
template <typename Call>
class Forwarder final : public engine::RequestObserver {
 public:
  explicit Forwarder(Call* call) : call_(call) {}
  void OnText(std::string_view text, absl::Span<const engine::TokenLogprob> tokens) override {
    call_->OnEngineText(text, tokens);
  }
  void OnFinish(const absl::Status& status, engine::FinishReason reason, const engine::Usage& usage,
                const engine::Timings& timings) override {
    call_->OnEngineFinish(status, reason, usage, timings);
  }

 private:
  Call* const call_;
};

// CANCELLED, or DEADLINE_EXCEEDED when the cancellation is the call's deadline (engine::CancellationStatus).
absl::Status EndedBeforeSubmit(const grpc::CallbackServerContext& context, const char* where) {
  return engine::CancellationStatus(DeadlineOf(context), absl::Now(), where);
}

absl::StatusOr<Admission> AdmitGenerate(const ServingState& state, const grpc::CallbackServerContext& context,
                                        const grpc::ByteBuffer& request);
absl::StatusOr<Admission> AdmitChat(const ServingState& state, const grpc::CallbackServerContext& context,
                                    const grpc::ByteBuffer& request);

// The gRPC front of generation.h's one request path: the call's bytes admitted, then StartAdmitted.
void StartGeneration(CallKind kind, ServingState* state, WorkQueue* work, const grpc::CallbackServerContext& context,
                     const grpc::ByteBuffer& request, StartHooks hooks) {
  absl::StatusOr<Admission> admission =
      kind == CallKind::kChat ? AdmitChat(*state, context, request) : AdmitGenerate(*state, context, request);
  const grpc::CallbackServerContext* ctx = &context;  // valid until the call is finished (OnDone)
  CallState call{DeadlineOf(context), [ctx] { return ctx->IsCancelled(); }};
  StartAdmitted(state, work, std::move(admission), std::move(call), std::move(hooks));
}

// ---------------------------------------------------------------------------------------------------------
// Unary Generate.

// The response messages of the two kinds of call. Generate's and Chat's share their field names except for
// where the text goes (GenerateResponse.text, ChatResponse.message.content); the stream messages share all.
template <CallKind kKind>
struct CallMessages;
template <>
struct CallMessages<CallKind::kGenerate> {
  using Unary = qrag::v1::GenerateResponse;
  using Stream = qrag::v1::GenerateStreamResponse;
  static void Begin(Unary*) {}
  static void Begin(Stream*) {}
  static void AppendText(Unary* m, std::string_view text) { m->mutable_text()->append(text); }
};
template <>
struct CallMessages<CallKind::kChat> {
  using Unary = qrag::v1::ChatResponse;
  using Stream = qrag::v1::ChatStreamResponse;
  static void Begin(Unary* m) { m->mutable_message()->set_role("assistant"); }
  static void Begin(Stream* m) { m->set_role("assistant"); }
  static void AppendText(Unary* m, std::string_view text) { m->mutable_message()->mutable_content()->append(text); }
};

template <CallKind kKind>
class GenerateCall final : public grpc::ServerUnaryReactor {
 public:
  using Messages = CallMessages<kKind>;

  GenerateCall(ServingState* state, WorkQueue* work, grpc::CallbackServerContext* context,
               grpc::ByteBuffer* response)
      : state_(state), work_(work), context_(context), response_(response) {
    state_->CallStarted();
    Messages::Begin(&message_);
  }

  void Start(const grpc::ByteBuffer& request) {
    StartHooks hooks;
    hooks.record = [this](Prelude prelude) {
      absl::MutexLock lock(&mu_);
      message_.set_model(std::move(prelude.model));
      *message_.mutable_passages() = std::move(prelude.rag.passages);
      rag_timings_ = prelude.rag.timings;
    };
    hooks.fail = [this](const absl::Status& s) { Finish(ToGrpcStatus(s)); };
    hooks.observer = std::make_shared<Forwarder<GenerateCall>>(this);
    hooks.link = &link_;
    StartGeneration(kKind, state_, work_, *context_, request, std::move(hooks));
  }

  void OnEngineText(std::string_view text, absl::Span<const engine::TokenLogprob> tokens) {
    absl::MutexLock lock(&mu_);
    Messages::AppendText(&message_, text);
    AddLogprobs(tokens, message_.mutable_logprobs());
  }

  void OnEngineFinish(const absl::Status& status, engine::FinishReason reason, const engine::Usage& usage,
                      const engine::Timings& timings) {
    absl::Status result = status;
    {
      absl::MutexLock lock(&mu_);
      if (result.ok()) {
        message_.set_finish_reason(engine::FinishReasonName(reason));
        FillUsage(usage, message_.mutable_usage());
        FillTimings(timings, message_.mutable_timings());
        FillRagTimings(rag_timings_, timings, message_.mutable_timings());
        result = SerializeMessage(message_, response_);
      }
    }
    Finish(ToGrpcStatus(result));  // the last use of `this`
  }

  void OnCancel() override { link_.Cancel(); }

  void OnDone() override {
    state_->CallEnded();
    delete this;
  }

 private:
  ServingState* const state_;
  WorkQueue* const work_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_;
  EngineLink link_;
  absl::Mutex mu_;
  typename Messages::Unary message_ ABSL_GUARDED_BY(mu_);
  std::optional<rag::RetrieveTimings> rag_timings_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------------------------
// Server-streaming GenerateStream.

template <CallKind kKind>
class GenerateStreamCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  using Messages = CallMessages<kKind>;

  GenerateStreamCall(ServingState* state, WorkQueue* work, grpc::CallbackServerContext* context)
      : state_(state), work_(work), context_(context) {
    state_->CallStarted();
    Messages::Begin(&pending_);  // rides on the first message
  }

  void Start(const grpc::ByteBuffer& request) {
    StartHooks hooks;
    hooks.record = [this](Prelude prelude) {
      absl::MutexLock lock(&mu_);
      model_ = std::move(prelude.model);
      *pending_.mutable_passages() = std::move(prelude.rag.passages);  // rides on the first message
      rag_timings_ = prelude.rag.timings;
    };
    // Nothing was written and nothing is in flight yet: the stream can finish at once.
    hooks.fail = [this](const absl::Status& s) { Finish(ToGrpcStatus(s)); };
    hooks.observer = std::make_shared<Forwarder<GenerateStreamCall>>(this);
    hooks.link = &link_;
    StartGeneration(kKind, state_, work_, *context_, request, std::move(hooks));
  }

  void OnEngineText(std::string_view text, absl::Span<const engine::TokenLogprob> tokens) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      pending_.mutable_text()->append(text);
      AddLogprobs(tokens, pending_.mutable_logprobs());
      has_pending_ = true;
      action = NextLocked();
    }
    Run(action);
  }

  void OnEngineFinish(const absl::Status& status, engine::FinishReason reason, const engine::Usage& usage,
                      const engine::Timings& timings) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        pending_.set_finish_reason(engine::FinishReasonName(reason));
        FillUsage(usage, pending_.mutable_usage());
        FillTimings(timings, pending_.mutable_timings());
        FillRagTimings(rag_timings_, timings, pending_.mutable_timings());
        pending_.set_model(model_);
        has_pending_ = true;
      }
      final_status_ = ToGrpcStatus(status);
      action = NextLocked();
    }
    Run(action);
  }

  void OnWriteDone(bool ok) override {
    bool cancel = false;
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The stream is broken (client gone or call cancelled): nothing more can be delivered.
        write_failed_ = true;
        cancel = !final_status_.has_value();
      }
      action = NextLocked();
    }
    if (cancel) link_.Cancel();
    Run(action);
  }

  void OnCancel() override { link_.Cancel(); }

  void OnDone() override {
    state_->CallEnded();
    delete this;
  }

 private:
  enum class Action { kNone, kWrite, kFinish };

  // Decides the next operation: one write at a time; Finish only after the engine finished and everything
  // deliverable was written.
  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finish_called_) return Action::kNone;
    if (has_pending_ && !write_failed_) {
      in_flight_.Clear();  // the previous write is done with it
      absl::Status s = SerializeMessage(pending_, &in_flight_);
      pending_.Clear();
      has_pending_ = false;
      if (s.ok()) {
        writing_ = true;
        return Action::kWrite;
      }
      // Cannot happen for well-formed messages; end the stream with the error once the engine finished.
      write_failed_ = true;
      if (!final_status_.has_value()) return Action::kNone;
    }
    if (final_status_.has_value()) {
      finish_called_ = true;
      return Action::kFinish;
    }
    return Action::kNone;
  }

  void Run(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        StartWrite(&in_flight_);  // in_flight_ is untouched until OnWriteDone
        return;
      case Action::kFinish: {
        grpc::Status status;
        {
          absl::MutexLock lock(&mu_);
          status = *final_status_;
        }
        Finish(std::move(status));  // the last use of `this`
        return;
      }
    }
  }

  ServingState* const state_;
  WorkQueue* const work_;
  grpc::CallbackServerContext* const context_;
  EngineLink link_;
  absl::Mutex mu_;
  std::string model_ ABSL_GUARDED_BY(mu_);
  typename Messages::Stream pending_ ABSL_GUARDED_BY(mu_);  // coalesced, not yet written
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ByteBuffer in_flight_;  // owned by the write in flight (writing_)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);  // set by the engine's OnFinish
  std::optional<rag::RetrieveTimings> rag_timings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

namespace {

// The front of AdmitGenerate and AdmitChat: serving phase, a call already over, the request's bytes.
absl::StatusOr<std::string> AdmitBytes(const ServingState& state, const grpc::CallbackServerContext& context,
                                       const grpc::ByteBuffer& request) {
  QRAG_RETURN_IF_ERROR(state.CheckAccepting());
  // A call cancelled (or past its deadline) before it started: its bytes may be gone already, so this must be
  // said before parsing (it would read as INVALID_ARGUMENT).
  // A call whose client gave up before its message arrived runs with no message at all (an invalid buffer,
  // unlike an empty message): the same.
  if (context.IsCancelled() || DeadlineOf(context) <= absl::Now() || !request.Valid()) {
    return EndedBeforeSubmit(context, "before the request was read");
  }
  return FlattenBytes(request);
}

absl::StatusOr<Admission> AdmitGenerate(const ServingState& state, const grpc::CallbackServerContext& context,
                                        const grpc::ByteBuffer& request) {
  QRAG_ASSIGN_OR_RETURN(std::string wire, AdmitBytes(state, context, request));
  QRAG_ASSIGN_OR_RETURN(qrag::v1::GenerateRequest parsed, ParseGenerateRequest(wire));
  wire.clear();
  wire.shrink_to_fit();
  return AdmitGenerateRequest(state, parsed, DeadlineOf(context));
}

absl::StatusOr<Admission> AdmitChat(const ServingState& state, const grpc::CallbackServerContext& context,
                                    const grpc::ByteBuffer& request) {
  QRAG_ASSIGN_OR_RETURN(std::string wire, AdmitBytes(state, context, request));
  QRAG_ASSIGN_OR_RETURN(qrag::v1::ChatRequest parsed, ParseChatRequest(wire));
  wire.clear();
  wire.shrink_to_fit();
  return AdmitChatRequest(state, parsed, DeadlineOf(context));
}

}  // namespace

grpc::ServerUnaryReactor* StartGenerateCall(CallKind kind, ServingState* state, WorkQueue* work,
                                            grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) {
  if (kind == CallKind::kChat) {
    auto* call = new GenerateCall<CallKind::kChat>(state, work, context, response);
    call->Start(*request);
    return call;
  }
  auto* call = new GenerateCall<CallKind::kGenerate>(state, work, context, response);
  call->Start(*request);
  return call;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerateStreamCall(CallKind kind, ServingState* state,
                                                                     WorkQueue* work,
                                                                     grpc::CallbackServerContext* context,
                                                                     const grpc::ByteBuffer* request) {
  if (kind == CallKind::kChat) {
    auto* call = new GenerateStreamCall<CallKind::kChat>(state, work, context);
    call->Start(*request);
    return call;
  }
  auto* call = new GenerateStreamCall<CallKind::kGenerate>(state, work, context);
  call->Start(*request);
  return call;
}

}  // namespace qrag::api
