#include "server/api/inference_service.h"

#include "server/api/generate_calls.h"
#include "server/api/status_mapping.h"

namespace qrag::api {
namespace {

// A GenerateStream call refused before it started (authentication): finishes at once, deletes itself.
class RefusedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::Status InferenceService::Authenticate(const grpc::CallbackServerContext& context) const {
  if (authenticator_ == nullptr) return absl::OkStatus();
  return authenticator_->Check(context.client_metadata());
}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  return StartGenerateCall(state_, context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::GenerateStream(grpc::CallbackServerContext* context,
                                                                            const grpc::ByteBuffer* request) {
  if (absl::Status s = Authenticate(*context); !s.ok()) return new RefusedStream(ToGrpcStatus(s));
  return StartGenerateStreamCall(state_, context, request);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const qrag::v1::ListModelsRequest* /*request*/,
                                                       qrag::v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
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
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  absl::StatusOr<const ServedModel*> model = state_->Find(request->model());
  if (model.ok()) *response = (*model)->info;
  reactor->Finish(ToGrpcStatus(model.status()));
  return reactor;
}

}  // namespace qrag::api
