#include "server/api/inference_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "server/api/chat_generation.h"
#include "server/api/generate_calls.h"
#include "server/api/validation.h"
#include "server/api/status_mapping.h"
#include "server/api/wire.h"
#include "server/common/status.h"

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

grpc::ServerUnaryReactor* InferenceService::StartUnary(CallKind kind, grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    state_->ReportRejected(s);  // clients see UNAUTHENTICATED: qrag_requests_total counts it too
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  return StartGenerateCall(kind, state_, work_, context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::StartStream(CallKind kind,
                                                                         grpc::CallbackServerContext* context,
                                                                         const grpc::ByteBuffer* request) {
  if (absl::Status s = Authenticate(*context); !s.ok()) {
    state_->ReportRejected(s);
    return new RefusedStream(ToGrpcStatus(s));
  }
  return StartGenerateStreamCall(kind, state_, work_, context, request);
}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return StartUnary(CallKind::kGenerate, context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::GenerateStream(grpc::CallbackServerContext* context,
                                                                            const grpc::ByteBuffer* request) {
  return StartStream(CallKind::kGenerate, context, request);
}

grpc::ServerUnaryReactor* InferenceService::Chat(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return StartUnary(CallKind::kChat, context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::ChatStream(grpc::CallbackServerContext* context,
                                                                        const grpc::ByteBuffer* request) {
  return StartStream(CallKind::kChat, context, request);
}

grpc::ServerUnaryReactor* InferenceService::ApplyChatTemplate(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(Authenticate(*context));
    QRAG_RETURN_IF_ERROR(state_->CheckAccepting());
    QRAG_ASSIGN_OR_RETURN(std::string wire, FlattenBytes(*request));
    QRAG_ASSIGN_OR_RETURN(const qrag::v1::ChatRequest parsed, ParseChatRequest(wire));
    QRAG_ASSIGN_OR_RETURN(const ValidatedChat validated, ValidateChatRequest(parsed, state_->validation()));
    QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state_->Find(validated.model));
    QRAG_RETURN_IF_ERROR(CheckHasChatTemplate(*model));
    QRAG_ASSIGN_OR_RETURN(chat::ChatPrompt prompt,
                          model->chat->Apply(validated.messages, validated.add_generation_prompt));
    qrag::v1::ApplyChatTemplateResponse out;
    out.set_prompt(std::move(prompt.text));
    out.mutable_token_ids()->Add(prompt.token_ids.begin(), prompt.token_ids.end());
    out.set_model(model->name);
    std::vector<int32_t> stops = model->engine->tokenizer()->eos_ids();
    for (int32_t id : model->chat->end_of_turn_ids()) {
      if (std::find(stops.begin(), stops.end(), id) == stops.end()) stops.push_back(id);
    }
    out.mutable_end_of_turn_ids()->Add(stops.begin(), stops.end());
    out.set_template_source(model->chat->origin());
    return SerializeMessage(out, response);
  }()));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(Authenticate(*context));
    QRAG_RETURN_IF_ERROR(ParseRequest<qrag::v1::ListModelsRequest>(*request).status());
    if (state_->phase() == ServingPhase::kLoading) {
      return absl::UnavailableError("model loading; retry when health is SERVING");
    }
    qrag::v1::ListModelsResponse out;
    for (const ServedModel* m : state_->Models()) *out.add_models() = m->info;
    return SerializeMessage(out, response);
  }()));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(Authenticate(*context));
    QRAG_ASSIGN_OR_RETURN(const qrag::v1::GetModelInfoRequest parsed,
                          ParseRequest<qrag::v1::GetModelInfoRequest>(*request));
    QRAG_ASSIGN_OR_RETURN(const ServedModel* model, state_->Find(parsed.model()));
    return SerializeMessage(model->info, response);
  }()));
  return reactor;
}

}  // namespace qrag::api
