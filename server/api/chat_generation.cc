#include "server/api/chat_generation.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api/retrieval_service.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"
#include "server/rag/prompt_builder.h"

namespace qrag::api {
namespace {

// The conversation with the passages in it: by default a system message (chat::WithPassages); with a
// rag.prompt_template, the last user message becomes the template filled with {context} and {question}.
absl::StatusOr<chat::ChatPrompt> Render(const ServedModel& model, const ChatAdmission& chat,
                                        const std::vector<std::string>& passages) {
  if (chat.rag_template.empty()) {
    return model.chat->Apply(chat::WithPassages(chat.messages, passages, model.chat->accepts_system()),
                             chat.add_generation_prompt);
  }
  std::vector<chat::Message> messages = chat.messages;
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (it->role != "user") continue;
    QRAG_ASSIGN_OR_RETURN(it->content, rag::BuildRagPrompt(it->content, passages, chat.rag_template));
    break;
  }
  return model.chat->Apply(messages, chat.add_generation_prompt);
}

}  // namespace

absl::Status CheckHasChatTemplate(const ServedModel& model) {
  if (model.chat != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "model ", model.name, " has no chat template (neither its GGUF metadata nor its tokenizer_config.json "
      "holds one); start qrag-server with --chat-template FILE, or use Generate with a raw prompt"));
}

absl::Status RenderChatPrompt(const ServedModel& model, const ChatAdmission& chat,
                              const std::vector<std::string>& passages, engine::EngineRequest* request) {
  QRAG_RETURN_IF_ERROR(CheckHasChatTemplate(model));
  QRAG_ASSIGN_OR_RETURN(chat::ChatPrompt prompt, Render(model, chat, passages));
  QRAG_RETURN_IF_ERROR(engine::CheckMaxTokens(request->max_tokens));
  const int prompt_tokens = static_cast<int>(prompt.token_ids.size());
  const int context = model.engine->context_length();
  if (request->max_tokens_fits_context) {
    request->max_tokens = engine::FitMaxTokens(request->max_tokens, prompt_tokens, context);
  }
  QRAG_RETURN_IF_ERROR(engine::CheckFitsContext(prompt_tokens, request->max_tokens, context));
  request->prompt = std::move(prompt.text);
  request->prompt_ids = std::move(prompt.token_ids);
  request->extra_stop_ids = model.chat->end_of_turn_ids();
  return absl::OkStatus();
}

absl::Status PrepareChatRagRequest(const ServingState& state, const ServedModel& model,
                                   const qrag::v1::RagOptions& options, const ChatAdmission& chat,
                                   engine::EngineRequest* request, RagOutcome* outcome) {
  QRAG_RETURN_IF_ERROR(CheckHasChatTemplate(model));
  if (!chat.rag_template.empty()) {  // a template without {question} is refused before retrieval
    QRAG_RETURN_IF_ERROR(rag::BuildRagPrompt("", {}, chat.rag_template).status());
  }
  const std::string* question = nullptr;
  for (auto it = chat.messages.rbegin(); it != chat.messages.rend() && question == nullptr; ++it) {
    if (it->role == "user") question = &it->content;
  }
  if (question == nullptr || question->empty()) {
    return absl::InvalidArgumentError("rag: the conversation has no user message with text to retrieve for");
  }
  QRAG_RETURN_IF_ERROR(engine::CheckMaxTokens(request->max_tokens));
  const int reserve = engine::AnswerReserve(request->max_tokens, request->max_tokens_fits_context);
  const int budget = model.engine->context_length() - reserve;
  auto measure_arranged = [&](const std::vector<std::string>& passages) -> absl::StatusOr<int> {
    QRAG_ASSIGN_OR_RETURN(chat::ChatPrompt prompt, Render(model, chat, passages));
    return static_cast<int>(prompt.token_ids.size());
  };
  // The conversation alone must fit before any encoder work is spent on retrieval.
  QRAG_ASSIGN_OR_RETURN(const int bare_tokens, measure_arranged({}));
  QRAG_RETURN_IF_ERROR(engine::CheckFitsContext(bare_tokens, reserve, model.engine->context_length()));
  QRAG_ASSIGN_OR_RETURN(RetrievedForRag retrieved, RetrieveForRag(state, options, *question));
  // Fitting drops by rank; every count is of the prompt in its own passage order.
  QRAG_ASSIGN_OR_RETURN(const rag::PassageFit fit,
                        rag::FitPassages(retrieved.passages, budget,
                                         [&](const std::vector<std::string>& rank_ordered) {
                                           return measure_arranged(retrieved.Arrange(rank_ordered));
                                         }));
  const std::vector<std::string> kept = retrieved.Arrange(rag::FittedPassages(retrieved.passages, fit));
  FillRagOutcome(retrieved, fit, outcome);
  return RenderChatPrompt(model, chat, kept, request);
}

}  // namespace qrag::api
