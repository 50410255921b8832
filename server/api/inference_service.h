// qrag.v1.Inference over the gRPC callback API: Generate and GenerateStream take the raw request bytes (so
// a request with invalid UTF-8 gets INVALID_ARGUMENT naming the field instead of gRPC's generic
// deserialization error; see validation.h) and run as reactors (generate_calls.h); ListModels and
// GetModelInfo answer from the ServingState.
//
// With an authenticator, every method first checks the caller's bearer token (UNAUTHENTICATED otherwise).
//
// Thread-safe: gRPC calls the handlers from its threads concurrently. `state` must outlive the service.
#ifndef QRAG_SERVER_API_INFERENCE_SERVICE_H_
#define QRAG_SERVER_API_INFERENCE_SERVICE_H_

#include "qrag/v1/inference.grpc.pb.h"
#include <memory>

#include "server/api/security.h"
#include "server/api/serving_state.h"

namespace qrag::api {

class InferenceService final
    : public qrag::v1::Inference::WithRawCallbackMethod_Generate<
          qrag::v1::Inference::WithRawCallbackMethod_GenerateStream<
              qrag::v1::Inference::WithCallbackMethod_ListModels<
                  qrag::v1::Inference::WithCallbackMethod_GetModelInfo<qrag::v1::Inference::Service>>>> {
 public:
  // `authenticator` null: every caller is served.
  InferenceService(ServingState* state, std::shared_ptr<const TokenAuthenticator> authenticator)
      : state_(state), authenticator_(std::move(authenticator)) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const qrag::v1::ListModelsRequest* request,
                                       qrag::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const qrag::v1::GetModelInfoRequest* request,
                                         qrag::v1::ModelInfo* response) override;

 private:
  absl::Status Authenticate(const grpc::CallbackServerContext& context) const;

  ServingState* const state_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_INFERENCE_SERVICE_H_
