// The one start of every generation request, whatever front end it came through (gRPC's Generate /
// GenerateStream / Chat / ChatStream, the HTTP API's /v1/completions and /v1/chat/completions).
//
// A front end turns its own syntax into a qrag.v1.GenerateRequest or ChatRequest; Admit* applies the rules
// (serving phase, validation, model lookup, chat template, deadline), and StartAdmitted renders the chat,
// retrieves for the rag option on the work queue (never on the front end's I/O threads), and submits to the
// model's engine with the front end's observer. Every way a request fails to reach the engine ends in exactly
// one StartHooks::fail; a refusal is reported to the ServingState for qrag_requests_total.
//
// Thread-safe: the functions may run on any thread; the hooks run on the calling thread, a work-queue thread
// or (the observer) the engine thread.
#ifndef QRAG_SERVER_API_GENERATION_H_
#define QRAG_SERVER_API_GENERATION_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qrag/v1/inference.pb.h"
#include "server/api/chat_generation.h"
#include "server/api/rag_generation.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"
#include "server/engine/engine.h"

namespace qrag::api {

// A request the server accepted: the model to run it on and the engine request, deadline included.
struct Admission {
  const ServedModel* model = nullptr;
  engine::EngineRequest request;
  std::optional<qrag::v1::RagOptions> rag;  // set: retrieve first (rag_generation.h)
  std::optional<ChatAdmission> chat;        // set: a chat request; the prompt is the rendered conversation
};

// Validation (INVALID_ARGUMENT / NOT_FOUND), model lookup (NOT_FOUND / UNAVAILABLE) and `deadline` copied into
// the engine request. The serving phase is the caller's to check first (ServingState::CheckAccepting).
absl::StatusOr<Admission> AdmitGenerateRequest(const ServingState& state, const qrag::v1::GenerateRequest& request,
                                               absl::Time deadline);
// The same for a chat request, plus FAILED_PRECONDITION when the model has no chat template. The conversation
// is rendered by StartAdmitted.
absl::StatusOr<Admission> AdmitChatRequest(const ServingState& state, const qrag::v1::ChatRequest& request,
                                           absl::Time deadline);

// Links a call to its engine request for cancellation. The client may cancel before Submit returned the id
// (front ends hear of cancellation on their own threads), so whichever of Submitted/Cancel comes second issues
// the Engine::Cancel. Engine::Cancel is always called without the mutex held.
class EngineLink {
 public:
  void Submitted(engine::Engine* engine, uint64_t id);
  void Cancel();
  bool cancelled() const;

 private:
  mutable absl::Mutex mu_;
  engine::Engine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
};

// What a generation call records before its request can reach the engine (the engine may call the observer
// before Submit returns).
struct Prelude {
  std::string model;  // the served name the request resolved to
  RagOutcome rag;     // passages and retrieval timings; empty without the rag option
};

// How a generation call hears back from its start: `record` runs before the engine can call the observer;
// `fail` when the request did not reach the engine (once). `link` must outlive the call's use of the engine.
struct StartHooks {
  std::function<void(Prelude)> record;
  std::function<void(const absl::Status&)> fail;
  std::shared_ptr<engine::RequestObserver> observer;
  EngineLink* link = nullptr;
};

// The front end's view of its call while the request waits for retrieval: the call's deadline, and whether
// the client is gone (link->cancelled() for front ends that report cancellation through the link).
struct CallState {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> is_cancelled;
};

// Starts an admitted request (or fails the hooks with the admission's error, reporting it to `state`): renders
// a chat without rag on the calling thread (as costly as tokenizing a prompt); with rag, retrieval, prompt
// fitting and rendering run on `work` (RESOURCE_EXHAUSTED when its queue is full; CANCELLED /
// DEADLINE_EXCEEDED when the call ended while waiting), then the request is submitted.
void StartAdmitted(ServingState* state, WorkQueue* work, absl::StatusOr<Admission> admission, CallState call,
                   StartHooks hooks);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_GENERATION_H_
