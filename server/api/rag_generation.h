// Generate's `rag` option: retrieve passages for the prompt (the question) from a collection, then replace
// the engine request's prompt with the template filled with them. Runs on the gRPC thread that admitted
// the call, before the request reaches the engine (the engine thread never embeds or searches).
#ifndef QRAG_SERVER_API_RAG_GENERATION_H_
#define QRAG_SERVER_API_RAG_GENERATION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "qrag/v1/inference.pb.h"
#include "server/api/serving_state.h"
#include "server/engine/engine.h"
#include "server/rag/collections.h"
#include "server/rag/prompt_builder.h"

namespace qrag::api {

struct RagOutcome {
  google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage> passages;
  std::optional<rag::RetrieveTimings> timings;  // set when retrieval ran
};

// What retrieval found for a question: the hits, best first, their texts, and the timings.
struct RetrievedForRag {
  std::vector<rag::RetrievedChunk> hits;
  std::vector<std::string> passages;  // hits[i].chunk.text
  std::vector<rag::PassageKey> keys;  // hits[i]'s document id and chunk index
  rag::PassageOrder order = rag::PassageOrder::kCanonical;  // RagOptions.passage_order
  rag::RetrieveTimings timings;

  // Rank-ordered kept passages (a prefix of `passages`, the last maybe cut) in the prompt's order.
  std::vector<std::string> Arrange(std::vector<std::string> kept) const {
    return rag::ArrangePassages(std::move(kept), keys, order);
  }
};

// The retrieval step shared by Generate's and Chat's rag option: FAILED_PRECONDITION without an embedder;
// INVALID_ARGUMENT for a missing collection name, top_k or min_score outside rag::Collections::CheckQuery's
// rules, or an unknown passage_order; the collection's own errors (NOT_FOUND, ...).
absl::StatusOr<RetrievedForRag> RetrieveForRag(const ServingState& state, const qrag::v1::RagOptions& options,
                                               const std::string& question);

// Lists the passages `fit` kept (the last one cut as it says) in outcome->passages, best first, each with its
// number in the prompt (citation), and the timings.
void FillRagOutcome(const RetrievedForRag& retrieved, const rag::PassageFit& fit, RagOutcome* outcome);

// The prompt is fitted to `model`'s context (rag::FitRagPrompt, with room for max_tokens): lower-ranked
// passages are dropped, or the best one cut, and outcome->passages lists only what the prompt holds.
// FAILED_PRECONDITION without an embedder; INVALID_ARGUMENT for a missing collection name, top_k or
// min_score outside rag::Collections::CheckQuery's rules, or a template without {question}; OUT_OF_RANGE when the question and template alone do not fit;
// the collection's own errors (NOT_FOUND, ...).
absl::Status PrepareRagRequest(const ServingState& state, const ServedModel& model,
                               const qrag::v1::RagOptions& options, engine::EngineRequest* request,
                               RagOutcome* outcome);

// Adds the retrieval timings and generate_seconds (= the engine's total) when retrieval ran.
void FillRagTimings(const std::optional<rag::RetrieveTimings>& rag, const engine::Timings& engine,
                    qrag::v1::Timings* out);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_RAG_GENERATION_H_
