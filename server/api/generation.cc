#include "server/api/generation.h"

#include <utility>

#include "server/api/validation.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"

namespace qrag::api {
namespace {

void SubmitAdmitted(Admission admission, Prelude prelude, const StartHooks& hooks) {
  hooks.record(std::move(prelude));
  engine::Engine* engine = admission.model->engine;
  absl::StatusOr<uint64_t> id = engine->Submit(std::move(admission.request), hooks.observer);
  if (!id.ok()) {  // the engine reports its own refusals to the metrics
    hooks.fail(id.status());
    return;
  }
  // Front ends keep their call alive until the engine's OnFinish, so the link is alive here even when the
  // engine already finished the request.
  hooks.link->Submitted(engine, *id);
}

}  // namespace

absl::StatusOr<Admission> AdmitGenerateRequest(const ServingState& state, const qrag::v1::GenerateRequest& request,
                                               absl::Time deadline) {
  QRAG_ASSIGN_OR_RETURN(ValidatedRequest validated, ValidateGenerateRequest(request, state.validation()));
  QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state.Find(validated.model));
  Admission admission;
  admission.model = model;
  admission.request = std::move(validated.request);
  admission.request.deadline = deadline;
  if (request.has_rag()) admission.rag = request.rag();
  return admission;
}

absl::StatusOr<Admission> AdmitChatRequest(const ServingState& state, const qrag::v1::ChatRequest& request,
                                           absl::Time deadline) {
  QRAG_ASSIGN_OR_RETURN(ValidatedChat validated, ValidateChatRequest(request, state.validation()));
  QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state.Find(validated.model));
  QRAG_RETURN_IF_ERROR(CheckHasChatTemplate(*model));
  Admission admission;
  admission.model = model;
  admission.request = std::move(validated.request);
  admission.request.deadline = deadline;
  admission.chat = ChatAdmission{std::move(validated.messages), validated.add_generation_prompt,
                                 request.has_rag() ? request.rag().prompt_template() : std::string()};
  if (request.has_rag()) admission.rag = request.rag();
  return admission;
}

void EngineLink::Submitted(engine::Engine* engine, uint64_t id) {
  bool cancel_now;
  {
    absl::MutexLock lock(&mu_);
    engine_ = engine;
    id_ = id;
    cancel_now = cancel_requested_;
  }
  if (cancel_now) engine->Cancel(id);
}

void EngineLink::Cancel() {
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

bool EngineLink::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancel_requested_;
}

void StartAdmitted(ServingState* state, WorkQueue* work, absl::StatusOr<Admission> admission, CallState call,
                   StartHooks hooks) {
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
  // Retrieval (query embedding, index search, prompt fitting: milliseconds to seconds of CPU) runs on the work
  // queue: the front ends' threads are few, and health checks and cheap calls must not wait behind an encoder.
  auto admitted = std::make_shared<Admission>(*std::move(admission));
  auto pending = std::make_shared<Prelude>(std::move(prelude));
  auto rejected = [state, hooks](const absl::Status& s) {
    state->ReportRejected(s);
    hooks.fail(s);
  };
  const absl::Status queued = work->Submit([state, call, admitted, pending, hooks, rejected] {
    if (call.is_cancelled() || call.deadline <= absl::Now()) {
      return rejected(engine::CancellationStatus(call.deadline, absl::Now(), "while waiting for retrieval"));
    }
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

}  // namespace qrag::api
