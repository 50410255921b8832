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
}

void FillTimings(const engine::Timings& t, qrag::v1::Timings* out) {
  out->set_queue_seconds(t.queue_seconds);
  out->set_time_to_first_token_seconds(t.time_to_first_token_seconds);
  out->set_total_seconds(t.total_seconds);
}

// Links a call to its engine request for cancellation. The client may cancel before Submit returned the id
// (gRPC runs OnCancel on its own thread), so whichever of Submitted/Cancel comes second issues the
// Engine::Cancel. Engine::Cancel is always called without the mutex held.
class EngineLink {
 public:
  void Submitted(engine::Engine* engine, uint64_t id) {
    bool cancel_now;
    {
      absl::MutexLock lock(&mu_);
      engine_ = engine;
      id_ = id;
      cancel_now = cancel_requested_;
    }
    if (cancel_now) engine->Cancel(id);
  }

  void Cancel() {
    engine::Engine* engine;
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      cancel_requested_ = true;
      engine = engine_;
      id = id_;
    }
    if (engine != nullptr) engine->Cancel(id);
  }

 private:
  absl::Mutex mu_;
  engine::Engine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
};

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

// What a generation call records before its request can reach the engine (the engine may call the observer
// before Submit returns).
struct Prelude {
  std::string model;  // the served name the request resolved to
  RagOutcome rag;     // passages and retrieval timings; empty without the rag option
};

// How a generation call hears back from its start: `record` runs before the engine can call the observer;
// `fail` when the request did not reach the engine (the call then finishes with that status, once).
struct StartHooks {
  std::function<void(Prelude)> record;
  std::function<void(const absl::Status&)> fail;
  std::shared_ptr<engine::RequestObserver> observer;
  EngineLink* link = nullptr;
};

// CANCELLED, or DEADLINE_EXCEEDED when the cancellation is the call's deadline (engine::CancellationStatus).
absl::Status EndedBeforeSubmit(const grpc::CallbackServerContext& context, const char* where) {
  return engine::CancellationStatus(DeadlineOf(context), absl::Now(), where);
}

void SubmitAdmitted(Admission admission, Prelude prelude, const StartHooks& hooks) {
  hooks.record(std::move(prelude));
  engine::Engine* engine = admission.model->engine;
  absl::StatusOr<uint64_t> id = engine->Submit(std::move(admission.request), hooks.observer);
  if (!id.ok()) {  // the engine reports its own refusals to the metrics
    hooks.fail(id.status());
    return;
  }
  // gRPC does not run the reactor's OnDone before it is finished, so the call is alive here even when the
  // engine already finished the request.
  hooks.link->Submitted(engine, *id);
}

// The one request-start path of the generation calls: admission (serving phase, deadline, parse, validation,
// model; a refusal is reported to `state` for qrag_requests_total), then submission with the call's observer
// and the link for cancellation. With the rag option, retrieval (query embedding, index search, prompt
// fitting: milliseconds to seconds of CPU) runs on the work queue, never on the gRPC thread that started the
// call: gRPC's callback threads are few, and health checks and cheap calls must not wait behind an encoder.
// Every way the request fails to reach the engine ends in exactly one hooks.fail.
void StartGeneration(CallKind kind, ServingState* state, WorkQueue* work, const grpc::CallbackServerContext& context,
                     const grpc::ByteBuffer& request, StartHooks hooks) {
  absl::StatusOr<Admission> admission =
      kind == CallKind::kChat ? AdmitChat(*state, context, request) : AdmitGenerate(*state, context, request);
  if (admission.ok() && admission->chat.has_value() && !admission->rag.has_value()) {
    // Rendering and tokenizing a conversation costs what tokenizing a Generate prompt costs (done on this
    // thread by Engine::Submit too); with rag it runs on the work queue below.
    if (absl::Status s = RenderChatPrompt(*admission->model, *admission->chat, {}, &admission->request); !s.ok()) {
      admission = s;
    }
  }
  if (!admission.ok()) {
    state->ReportRejected(admission.status());
    hooks.fail(admission.status());
    return;
  }
  Prelude prelude;
  prelude.model = admission->model->name;
  if (!admission->rag.has_value()) {
    SubmitAdmitted(*std::move(admission), std::move(prelude), hooks);
    return;
  }
  auto admitted = std::make_shared<Admission>(*std::move(admission));
  auto pending = std::make_shared<Prelude>(std::move(prelude));
  const grpc::CallbackServerContext* ctx = &context;  // valid until the call is finished (OnDone)
  auto rejected = [state, hooks](const absl::Status& s) {
    state->ReportRejected(s);
    hooks.fail(s);
  };
  const absl::Status queued = work->Submit([state, ctx, admitted, pending, hooks, rejected] {
    if (ctx->IsCancelled()) return rejected(EndedBeforeSubmit(*ctx, "while waiting for retrieval"));
    const absl::Status s =
        admitted->chat.has_value()
            ? PrepareChatRagRequest(*state, *admitted->model, *admitted->rag, *admitted->chat, &admitted->request,
                                    &pending->rag)
            : PrepareRagRequest(*state, *admitted->model, *admitted->rag, &admitted->request, &pending->rag);
    if (!s.ok()) return rejected(s);
    SubmitAdmitted(std::move(*admitted), std::move(*pending), hooks);
  });
  if (!queued.ok()) rejected(queued);
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

}  // namespace

absl::StatusOr<Admission> AdmitGenerate(const ServingState& state, const grpc::CallbackServerContext& context,
                                        const grpc::ByteBuffer& request) {
  QRAG_ASSIGN_OR_RETURN(std::string wire, AdmitBytes(state, context, request));
  QRAG_ASSIGN_OR_RETURN(qrag::v1::GenerateRequest parsed, ParseGenerateRequest(wire));
  wire.clear();
  wire.shrink_to_fit();
  QRAG_ASSIGN_OR_RETURN(ValidatedRequest validated, ValidateGenerateRequest(parsed, state.validation()));
  QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state.Find(validated.model));
  Admission admission;
  admission.model = model;
  admission.request = std::move(validated.request);
  admission.request.deadline = DeadlineOf(context);
  if (parsed.has_rag()) admission.rag = parsed.rag();
  return admission;
}

absl::StatusOr<Admission> AdmitChat(const ServingState& state, const grpc::CallbackServerContext& context,
                                    const grpc::ByteBuffer& request) {
  QRAG_ASSIGN_OR_RETURN(std::string wire, AdmitBytes(state, context, request));
  QRAG_ASSIGN_OR_RETURN(qrag::v1::ChatRequest parsed, ParseChatRequest(wire));
  wire.clear();
  wire.shrink_to_fit();
  QRAG_ASSIGN_OR_RETURN(ValidatedChat validated, ValidateChatRequest(parsed, state.validation()));
  QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state.Find(validated.model));
  QRAG_RETURN_IF_ERROR(CheckHasChatTemplate(*model));
  Admission admission;
  admission.model = model;
  admission.request = std::move(validated.request);
  admission.request.deadline = DeadlineOf(context);
  admission.chat = ChatAdmission{std::move(validated.messages), validated.add_generation_prompt,
                                 parsed.has_rag() ? parsed.rag().prompt_template() : std::string()};
  if (parsed.has_rag()) admission.rag = parsed.rag();
  return admission;
}

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
