#include "server/api/rag_generation.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/api/retrieval_service.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"
#include "server/rag/prompt_builder.h"

namespace qrag::api {
namespace {

// The checks before any retrieval: an embedder, a collection name.
absl::StatusOr<rag::Collections*> CheckRagOptions(const ServingState& state, const qrag::v1::RagOptions& options) {
  rag::Collections* collections = state.rag();
  if (collections == nullptr) {
    return absl::FailedPreconditionError(
        "rag: this server runs without an embedder; start qrag-server with --embedder DIR --data-dir DIR");
  }
  if (options.collection().empty()) return absl::InvalidArgumentError("rag.collection is required");
  if (!qrag::v1::PassageOrder_IsValid(options.passage_order())) {
    return absl::InvalidArgumentError(absl::StrCat("rag.passage_order ", options.passage_order(),
                                                   " is not a PassageOrder (CANONICAL = 1, RANK = 2)"));
  }
  return collections;
}

rag::PassageOrder OrderOf(const qrag::v1::RagOptions& options) {
  return options.passage_order() == qrag::v1::PASSAGE_ORDER_RANK ? rag::PassageOrder::kRank
                                                                   : rag::PassageOrder::kCanonical;
}

}  // namespace

absl::StatusOr<RetrievedForRag> RetrieveForRag(const ServingState& state, const qrag::v1::RagOptions& options,
                                               const std::string& question) {
  QRAG_RETURN_IF_ERROR(CheckRagOptions(state, options).status());
  rag::Collections* collections = state.rag();
  QRAG_ASSIGN_OR_RETURN(const int top_k, collections->CheckQuery(options.top_k(), options.min_score(), "rag."));
  QRAG_ASSIGN_OR_RETURN(const rag::RetrieveOptions how, RetrieveOptionsOf(options.mode(), false, "rag."));
  RetrievedForRag out;
  QRAG_ASSIGN_OR_RETURN(out.hits,
                        collections->Retrieve(options.collection(), question, top_k, options.min_score(),
                                              rag::Metadata(options.filter().begin(), options.filter().end()),
                                              &out.timings, how));
  for (const rag::RetrievedChunk& h : out.hits) {
    out.passages.push_back(h.chunk.text);
    out.keys.push_back({.document_id = h.chunk.document_id, .chunk_index = h.chunk.seq});
  }
  out.order = OrderOf(options);
  return out;
}

void FillRagOutcome(const RetrievedForRag& retrieved, const rag::PassageFit& fit, RagOutcome* outcome) {
  const std::vector<int> position = rag::PromptPositions(retrieved.keys, fit.passages_used, retrieved.order);
  for (int i = 0; i < fit.passages_used; ++i) {
    qrag::v1::RetrievedPassage* p = outcome->passages.Add();
    FillPassage(retrieved.hits[i], p);
    p->set_citation(position[static_cast<size_t>(i)] + 1);
    if (fit.last_truncated && i == fit.passages_used - 1) {
      p->set_text(retrieved.passages[i].substr(0, fit.last_passage_bytes));
      p->set_truncated(true);
    }
  }
  outcome->timings = retrieved.timings;
}

absl::Status PrepareRagRequest(const ServingState& state, const ServedModel& model,
                               const qrag::v1::RagOptions& options, engine::EngineRequest* request,
                               RagOutcome* outcome) {
  QRAG_RETURN_IF_ERROR(CheckRagOptions(state, options).status());
  // The passages are fitted to the generator's context below: room for the prompt is what max_tokens leaves.
  // Checked before retrieving, so a request that cannot fit costs no encoder work.
  const model::Tokenizer* tokenizer = model.engine->tokenizer();
  auto count_tokens = [tokenizer](const std::string& prompt) -> absl::StatusOr<int> {
    QRAG_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(prompt, model::EncodeOptions{}));
    return static_cast<int>(ids.size());
  };
  const int context = model.engine->context_length();
  QRAG_RETURN_IF_ERROR(engine::CheckMaxTokens(request->max_tokens));
  const int reserve = engine::AnswerReserve(request->max_tokens, request->max_tokens_fits_context);
  if (reserve >= context) {
    // No room even for the question. The limit to name is the one for the question alone (passages are
    // fitted to what max_tokens leaves), not the one for the prompt with every passage.
    QRAG_ASSIGN_OR_RETURN(const std::string bare, rag::BuildRagPrompt(request->prompt, {}, options.prompt_template()));
    QRAG_ASSIGN_OR_RETURN(const int question_tokens, count_tokens(bare));
    QRAG_RETURN_IF_ERROR(engine::CheckFitsContext(question_tokens, reserve, context));
  }
  QRAG_ASSIGN_OR_RETURN(const RetrievedForRag retrieved, RetrieveForRag(state, options, request->prompt));
  QRAG_ASSIGN_OR_RETURN(
      rag::FittedRagPrompt fitted,
      rag::FitRagPrompt(request->prompt, retrieved.passages, options.prompt_template(), context - reserve,
                        count_tokens, [&retrieved](std::vector<std::string> kept) {
                          return retrieved.Arrange(std::move(kept));
                        }));
  FillRagOutcome(retrieved,
                 {.passages_used = fitted.passages_used, .last_truncated = fitted.last_truncated,
                  .last_passage_bytes = fitted.last_passage_bytes, .prompt_tokens = fitted.prompt_tokens},
                 outcome);
  request->prompt = std::move(fitted.prompt);
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
