#include "server/api/serving_state.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::api {

const char* ServingPhaseName(ServingPhase phase) {
  switch (phase) {
    case ServingPhase::kLoading: return "loading";
    case ServingPhase::kServing: return "serving";
    case ServingPhase::kDraining: return "draining";
  }
  return "unknown";
}

ServingState::ServingState(ValidationOptions validation) : validation_(std::move(validation)) {}

absl::Status ServingState::Publish(ServedModel model) {
  QRAG_ASSIGN_OR_RETURN(std::string name, ResolveModel(model.name, validation_.models));
  if (name != model.name || model.engine == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot publish model '", model.name, "'"));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& m : models_) {
    if (m->name == name) return absl::InvalidArgumentError(absl::StrCat("model '", name, "' published twice"));
  }
  models_.push_back(std::make_unique<ServedModel>(std::move(model)));
  if (phase_ == ServingPhase::kLoading && models_.size() == validation_.models.size()) {
    phase_ = ServingPhase::kServing;
  }
  return absl::OkStatus();
}

void ServingState::StartDraining() {
  absl::MutexLock lock(&mu_);
  phase_ = ServingPhase::kDraining;
}

ServingPhase ServingState::phase() const {
  absl::MutexLock lock(&mu_);
  return phase_;
}

absl::Status ServingState::CheckAccepting() const {
  switch (phase()) {
    case ServingPhase::kServing: return absl::OkStatus();
    case ServingPhase::kLoading: return absl::UnavailableError("model loading; retry when health is SERVING");
    case ServingPhase::kDraining:
      return absl::UnavailableError("server is shutting down; retry on another replica");
  }
  return absl::InternalError("unknown serving phase");
}

absl::StatusOr<const ServedModel*> ServingState::Find(std::string_view name) const {
  QRAG_ASSIGN_OR_RETURN(std::string resolved, ResolveModel(name, validation_.models));
  absl::MutexLock lock(&mu_);
  for (const auto& m : models_) {
    if (m->name == resolved) return m.get();
  }
  return absl::UnavailableError(absl::StrCat("model '", resolved, "' is loading; retry when health is SERVING"));
}

std::vector<const ServedModel*> ServingState::Models() const {
  absl::MutexLock lock(&mu_);
  std::vector<const ServedModel*> out;
  for (const std::string& name : validation_.models) {
    for (const auto& m : models_) {
      if (m->name == name) out.push_back(m.get());
    }
  }
  return out;
}

}  // namespace qrag::api
