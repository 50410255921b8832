#include "server/api/inference_service.h"

#include "server/api/generate_calls.h"
#include "server/api/status_mapping.h"

namespace qrag::api {

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return StartGenerateCall(state_, context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::GenerateStream(grpc::CallbackServerContext* context,
                                                                            const grpc::ByteBuffer* request) {
  return StartGenerateStreamCall(state_, context, request);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const qrag::v1::ListModelsRequest* /*request*/,
                                                       qrag::v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (state_->phase() == ServingPhase::kLoading) {
    reactor->Finish(ToGrpcStatus(absl::UnavailableError("model loading; retry when health is SERVING")));
    return reactor;
  }
  for (const ServedModel* m : state_->Models()) *response->add_models() = m->info;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const qrag::v1::GetModelInfoRequest* request,
                                                         qrag::v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<const ServedModel*> model = state_->Find(request->model());
  if (model.ok()) *response = (*model)->info;
  reactor->Finish(ToGrpcStatus(model.status()));
  return reactor;
}

}  // namespace qrag::api
