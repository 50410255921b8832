#include "server/api/admin_service.h"

#include <string>

#include "server/api/status_mapping.h"
#include "server/api/wire.h"
#include "server/common/status.h"

namespace qrag::api {

absl::StatusOr<qrag::v1::ServerStats> CollectServerStats(const ServingState& state, std::string_view model) {
  QRAG_ASSIGN_OR_RETURN(std::string name, ResolveModel(model, state.validation().models));
  qrag::v1::ServerStats stats;
  stats.set_state(ServingPhaseName(state.phase()));
  stats.set_model(name);
  stats.set_active_calls(state.active_calls());
  absl::StatusOr<const ServedModel*> served = state.Find(name);
  if (!served.ok()) return stats;  // still loading: engine counters are zero
  const engine::EngineStats e = (*served)->engine->Stats();
  stats.set_waiting(e.waiting);
  stats.set_running(e.running);
  stats.set_kv_blocks_total(e.kv_blocks_total);
  stats.set_kv_blocks_free(e.kv_blocks_free);
  stats.set_kv_blocks_cached(e.kv_blocks_cached);
  stats.set_kv_block_size((*served)->kv_block_size);
  stats.set_iterations(e.iterations);
  stats.set_preemptions(e.preemptions);
  return stats;
}

grpc::ServerUnaryReactor* AdminService::GetServerStats(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus([&]() -> absl::Status {
    if (authenticator_ != nullptr) QRAG_RETURN_IF_ERROR(authenticator_->Check(context->client_metadata()));
    QRAG_ASSIGN_OR_RETURN(const qrag::v1::GetServerStatsRequest parsed,
                          ParseRequest<qrag::v1::GetServerStatsRequest>(*request));
    QRAG_ASSIGN_OR_RETURN(const qrag::v1::ServerStats stats, CollectServerStats(*state_, parsed.model()));
    return SerializeMessage(stats, response);
  }()));
  return reactor;
}

}  // namespace qrag::api
