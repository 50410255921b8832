// Chat and ChatStream: a conversation rendered with the model's own chat template (chat/chat_format.h) into
// the engine request's prompt token ids and end-of-turn stop ids; then the call generates as Generate does.
// With the rag option the question is the last user message and the passages reach the model through the
// conversation (chat::WithPassages), fitted to the context.
#ifndef QRAG_SERVER_API_CHAT_GENERATION_H_
#define QRAG_SERVER_API_CHAT_GENERATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "qrag/v1/inference.pb.h"
#include "server/api/rag_generation.h"
#include "server/api/serving_state.h"
#include "server/chat/chat_format.h"
#include "server/engine/engine.h"

namespace qrag::api {

struct ChatAdmission {
  std::vector<chat::Message> messages;
  bool add_generation_prompt = true;
  std::string rag_template;  // RagOptions.prompt_template: where the passages go (empty: a system message)
};

// FAILED_PRECONDITION naming --chat-template when `model` has no chat template.
absl::Status CheckHasChatTemplate(const ServedModel& model);

// Renders `chat` (with `passages`, chat::WithPassages) and sets request->prompt_ids, ->extra_stop_ids and
// ->prompt (the rendered text). The template's and validation's errors (INVALID_ARGUMENT, RESOURCE_EXHAUSTED);
// OUT_OF_RANGE when the rendered conversation leaves no room for max_tokens in the context.
absl::Status RenderChatPrompt(const ServedModel& model, const ChatAdmission& chat,
                              const std::vector<std::string>& passages, engine::EngineRequest* request);

// PrepareRagRequest for a chat: retrieves for the last user message, keeps the passages that fit (the
// conversation with them plus max_tokens within the context), renders. Errors as PrepareRagRequest's, and
// INVALID_ARGUMENT when the conversation has no user message to retrieve for.
absl::Status PrepareChatRagRequest(const ServingState& state, const ServedModel& model,
                                   const qrag::v1::RagOptions& options, const ChatAdmission& chat,
                                   engine::EngineRequest* request, RagOutcome* outcome);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_CHAT_GENERATION_H_
