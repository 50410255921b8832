// qrag.v1.Inference over the gRPC callback API. Every method takes the raw request bytes and parses them
// itself (wire.h), so bytes that are not the request are INVALID_ARGUMENT (a Generate prompt with invalid
// UTF-8 is named by field: validation.h). Generate and GenerateStream run as reactors (generate_calls.h), their
// retrieval on `work`; Chat and ChatStream are the same calls over a rendered conversation; ListModels,
// GetModelInfo and ApplyChatTemplate answer on the calling thread.
//
// With an authenticator, every method first checks the caller's bearer token (UNAUTHENTICATED otherwise).
//
// Thread-safe: gRPC calls the handlers from its threads concurrently. `state` must outlive the service.
#ifndef QRAG_SERVER_API_INFERENCE_SERVICE_H_
#define QRAG_SERVER_API_INFERENCE_SERVICE_H_

#include "qrag/v1/inference.grpc.pb.h"
#include <memory>

#include "server/api/generate_calls.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"

namespace qrag::api {

class InferenceService final
    : public qrag::v1::Inference::WithRawCallbackMethod_Generate<
          qrag::v1::Inference::WithRawCallbackMethod_GenerateStream<
              qrag::v1::Inference::WithRawCallbackMethod_ListModels<
                  qrag::v1::Inference::WithRawCallbackMethod_GetModelInfo<
                      qrag::v1::Inference::WithRawCallbackMethod_Chat<
                          qrag::v1::Inference::WithRawCallbackMethod_ChatStream<
                              qrag::v1::Inference::WithRawCallbackMethod_ApplyChatTemplate<
                                  qrag::v1::Inference::Service>>>>>>> {
 public:
  // `authenticator` null: every caller is served. `work` runs Generate's retrieval; not owned.
  InferenceService(ServingState* state, WorkQueue* work, std::shared_ptr<const TokenAuthenticator> authenticator)
      : state_(state), work_(work), authenticator_(std::move(authenticator)) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  // Chat and ChatStream run the Generate path (generate_calls.h) over the rendered conversation.
  grpc::ServerUnaryReactor* Chat(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ChatStream(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ApplyChatTemplate(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) override;

 private:
  absl::Status Authenticate(const grpc::CallbackServerContext& context) const;
  grpc::ServerUnaryReactor* StartUnary(CallKind kind, grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response);
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StartStream(CallKind kind, grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request);

  ServingState* const state_;
  WorkQueue* const work_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_INFERENCE_SERVICE_H_
