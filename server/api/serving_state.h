// What the API layer serves and in which phase it is: the one object the gRPC services share.
//
// Phases: kLoading (listening, model not ready: generation is UNAVAILABLE) -> kServing -> kDraining (SIGTERM:
// new generation requests are UNAVAILABLE while in-flight ones finish). Published models are immutable; their
// engines are owned by the caller and must outlive every gRPC call (destroy them after the server's
// Shutdown returned).
//
// Thread-safe: every method may be called from any thread.
#ifndef QRAG_SERVER_API_SERVING_STATE_H_
#define QRAG_SERVER_API_SERVING_STATE_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "qrag/v1/inference.pb.h"
#include "server/api/validation.h"
#include "server/chat/chat_format.h"
#include "server/engine/engine.h"

namespace qrag::rag {
class Collections;
}  // namespace qrag::rag

namespace qrag::api {

enum class ServingPhase { kLoading, kServing, kDraining };

// "loading", "serving", "draining" (the ServerStats.state strings).
const char* ServingPhaseName(ServingPhase phase);

struct ServedModel {
  std::string name;
  engine::Engine* engine = nullptr;  // not owned
  qrag::v1::ModelInfo info;          // name, shape, precision, context served, ...
  int kv_block_size = 0;
  const chat::ChatFormat* chat = nullptr;  // not owned; null: the model has no chat template
};

class ServingState {
 public:
  // `validation.models` lists the model names that will be served (known before they load; the first is the
  // default). The other limits are applied to every GenerateRequest.
  explicit ServingState(ValidationOptions validation);

  ServingState(const ServingState&) = delete;
  ServingState& operator=(const ServingState&) = delete;

  // Makes a loaded model available; the phase becomes kServing once every named model is published (unless
  // draining already started). INVALID_ARGUMENT for a name not in validation.models or published twice.
  absl::Status Publish(ServedModel model);

  // kDraining from now on (idempotent).
  void StartDraining();

  ServingPhase phase() const;
  const ValidationOptions& validation() const { return validation_; }

  // OK when generation requests are accepted; UNAVAILABLE ("model loading" / "server is shutting down")
  // otherwise.
  absl::Status CheckAccepting() const;

  // The published model of that name ("" = the default). NOT_FOUND for an unknown name, UNAVAILABLE when it
  // has not loaded yet. The pointer stays valid for the ServingState's lifetime.
  absl::StatusOr<const ServedModel*> Find(std::string_view name) const;

  // Every published model, in validation.models order.
  std::vector<const ServedModel*> Models() const;

  // Generate/GenerateStream calls held open by the API layer (ServerStats.active_calls).
  void CallStarted() { active_calls_.fetch_add(1, std::memory_order_relaxed); }
  void CallEnded() { active_calls_.fetch_sub(1, std::memory_order_relaxed); }
  int active_calls() const { return active_calls_.load(std::memory_order_relaxed); }

  // Where Generate calls refused before they reach an engine (not serving, malformed or invalid request,
  // unknown model) are reported, for qrag_requests_total; null: nowhere. Not owned; may be set at any time.
  void set_rejection_observer(engine::EngineObserver* observer) { rejection_observer_.store(observer); }
  void ReportRejected(const absl::Status& status) const {
    if (engine::EngineObserver* o = rejection_observer_.load(); o != nullptr) o->OnRequestRejected(status);
  }
  // The RAG collections (Retrieval service, Generate's rag option); null when the server runs without an
  // embedder. Set once at start-up, before SERVING; not owned.
  void SetRag(rag::Collections* rag) { rag_.store(rag, std::memory_order_release); }
  rag::Collections* rag() const { return rag_.load(std::memory_order_acquire); }

 private:
  const ValidationOptions validation_;
  mutable absl::Mutex mu_;
  ServingPhase phase_ ABSL_GUARDED_BY(mu_) = ServingPhase::kLoading;
  std::vector<std::unique_ptr<ServedModel>> models_ ABSL_GUARDED_BY(mu_);  // append-only
  std::atomic<int> active_calls_{0};
  std::atomic<engine::EngineObserver*> rejection_observer_{nullptr};
  std::atomic<rag::Collections*> rag_{nullptr};
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_SERVING_STATE_H_
