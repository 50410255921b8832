// qrag.v1.Admin: a read-only view of the serving engine (queue, running batch, KV-cache blocks) for operators
// and tests (e.g. "after a cancellation every KV block is free again").
//
// Thread-safe. `state` must outlive the service.
#ifndef QRAG_SERVER_API_ADMIN_SERVICE_H_
#define QRAG_SERVER_API_ADMIN_SERVICE_H_

#include "qrag/v1/admin.grpc.pb.h"
#include <memory>

#include "server/api/security.h"
#include "server/api/serving_state.h"

namespace qrag::api {

// ServerStats of `model` ("" = default): the engine's counters, or zeros with state "loading" before it
// loaded. NOT_FOUND for an unknown name.
absl::StatusOr<qrag::v1::ServerStats> CollectServerStats(const ServingState& state, std::string_view model);

// GetServerStats takes the raw request bytes (wire.h: unparsable bytes are INVALID_ARGUMENT).
class AdminService final : public qrag::v1::Admin::WithRawCallbackMethod_GetServerStats<qrag::v1::Admin::Service> {
 public:
  // `authenticator` null: every caller is served; else UNAUTHENTICATED without an accepted bearer token.
  AdminService(ServingState* state, std::shared_ptr<const TokenAuthenticator> authenticator)
      : state_(state), authenticator_(std::move(authenticator)) {}

  grpc::ServerUnaryReactor* GetServerStats(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;

 private:
  ServingState* const state_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_ADMIN_SERVICE_H_
