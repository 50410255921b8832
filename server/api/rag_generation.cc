#include "server/api/rag_generation.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/api/retrieval_service.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"
#include "server/rag/prompt_builder.h"

namespace qrag::api {

absl::Status PrepareRagRequest(const ServingState& state, const ServedModel& model,
                               const qrag::v1::RagOptions& options, engine::EngineRequest* request,
                               RagOutcome* outcome) {
  rag::Collections* collections = state.rag();
  if (collections == nullptr) {
    return absl::FailedPreconditionError(
        "rag: this server runs without an embedder; start qrag-server with --embedder DIR --data-dir DIR");
  }
  if (options.collection().empty()) return absl::InvalidArgumentError("rag.collection is required");
  QRAG_ASSIGN_OR_RETURN(const int top_k, collections->CheckQuery(options.top_k(), options.min_score(), "rag."));
  // The passages are fitted to the generator's context below: room for the prompt is what max_tokens leaves.
  // Checked before retrieving, so a request that cannot fit costs no encoder work.
  const model::Tokenizer* tokenizer = model.engine->tokenizer();
  auto count_tokens = [tokenizer](const std::string& prompt) -> absl::StatusOr<int> {
    QRAG_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(prompt, model::EncodeOptions{}));
    return static_cast<int>(ids.size());
  };
  const int context = model.engine->context_length();
  QRAG_RETURN_IF_ERROR(engine::CheckMaxTokens(request->max_tokens));
  if (request->max_tokens >= context) {
    // No room even for the question. The limit to name is the one for the question alone (passages are
    // fitted to what max_tokens leaves), not the one for the prompt with every passage.
    QRAG_ASSIGN_OR_RETURN(const std::string bare, rag::BuildRagPrompt(request->prompt, {}, options.prompt_template()));
    QRAG_ASSIGN_OR_RETURN(const int question_tokens, count_tokens(bare));
    QRAG_RETURN_IF_ERROR(engine::CheckFitsContext(question_tokens, request->max_tokens, context));
  }
  rag::RetrieveTimings timings;
  QRAG_ASSIGN_OR_RETURN(std::vector<rag::RetrievedChunk> hits,
                        collections->Retrieve(options.collection(), request->prompt, top_k, options.min_score(),
                                              rag::Metadata(options.filter().begin(), options.filter().end()),
                                              &timings));
  std::vector<std::string> passages;
  for (const rag::RetrievedChunk& h : hits) passages.push_back(h.chunk.text);
  QRAG_ASSIGN_OR_RETURN(
      rag::FittedRagPrompt fitted,
      rag::FitRagPrompt(request->prompt, passages, options.prompt_template(), context - request->max_tokens,
                        count_tokens));
  for (int i = 0; i < fitted.passages_used; ++i) {
    qrag::v1::RetrievedPassage* p = outcome->passages.Add();
    FillPassage(hits[i], p);
    if (fitted.last_truncated && i == fitted.passages_used - 1) {
      p->set_text(passages[i].substr(0, fitted.last_passage_bytes));
      p->set_truncated(true);
    }
  }
  request->prompt = std::move(fitted.prompt);
  outcome->timings = timings;
  return absl::OkStatus();
}

void FillRagTimings(const std::optional<rag::RetrieveTimings>& rag, const engine::Timings& engine,
                    qrag::v1::Timings* out) {
  if (!rag.has_value()) return;
  out->set_embed_seconds(rag->embed_seconds);
  out->set_search_seconds(rag->search_seconds);
  out->set_generate_seconds(engine.total_seconds);
}

}  // namespace qrag::api
