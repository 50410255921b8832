#include "server/api/rag_generation.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/api/retrieval_service.h"
#include "server/common/status.h"
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
  if (options.top_k() < 0 || options.top_k() > kMaxRagTopK) {
    return absl::InvalidArgumentError(absl::StrCat("rag.top_k must be in [0, ", kMaxRagTopK, "] (0: ",
                                                   kDefaultRagTopK, "), got ", options.top_k()));
  }
  const int top_k = options.top_k() == 0 ? kDefaultRagTopK : options.top_k();
  rag::RetrieveTimings timings;
  QRAG_ASSIGN_OR_RETURN(std::vector<rag::RetrievedChunk> hits,
                        collections->Retrieve(options.collection(), request->prompt, top_k, options.min_score(),
                                              rag::Metadata(options.filter().begin(), options.filter().end()),
                                              &timings));
  std::vector<std::string> passages;
  for (const rag::RetrievedChunk& h : hits) passages.push_back(h.chunk.text);
  // Fit the passages to the generator's context: room for the prompt is what max_tokens leaves. A request
  // whose max_tokens alone leaves no room is passed through whole and gets the engine's own error.
  const int budget = model.engine->context_length() - request->max_tokens;
  rag::FittedRagPrompt fitted;
  if (budget > 0 && request->max_tokens > 0) {
    const model::Tokenizer* tokenizer = model.engine->tokenizer();
    QRAG_ASSIGN_OR_RETURN(
        fitted, rag::FitRagPrompt(request->prompt, passages, options.prompt_template(), budget,
                                  [tokenizer](const std::string& prompt) -> absl::StatusOr<int> {
                                    QRAG_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                                                          tokenizer->Encode(prompt, model::EncodeOptions{}));
                                    return static_cast<int>(ids.size());
                                  }));
  } else {
    QRAG_ASSIGN_OR_RETURN(fitted.prompt, rag::BuildRagPrompt(request->prompt, passages, options.prompt_template()));
    fitted.passages_used = static_cast<int>(passages.size());
  }
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
