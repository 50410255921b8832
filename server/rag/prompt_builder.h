// The prompt of a retrieval-augmented request: retrieved passages, numbered, then the question.
//
// Default template (RagPromptOptions::kDefaultTemplate):
//   "Context:\n[1] <passage 1>\n[2] <passage 2>\n\nQuestion: <question>\nAnswer:"
// A custom template uses the placeholders {context} (the numbered passages, one per line) and {question};
// INVALID_ARGUMENT when {question} is missing.
#ifndef QRAG_SERVER_RAG_PROMPT_BUILDER_H_
#define QRAG_SERVER_RAG_PROMPT_BUILDER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qrag::rag {

inline constexpr char kDefaultRagTemplate[] = "Context:\n{context}\n\nQuestion: {question}\nAnswer:";

absl::StatusOr<std::string> BuildRagPrompt(const std::string& question, const std::vector<std::string>& passages,
                                           const std::string& prompt_template);

// The prompt made to fit the generator's context. `passages` come best first (`arrange`, when given, orders
// the kept ones for the prompt, and every count is of the arranged prompt); `count_tokens` gives the
// generator's token count of a prompt (what its engine will see), and `budget` the most prompt tokens the
// request leaves room for (context length - max_tokens). The lowest-ranked passages are dropped until the
// prompt fits; when even the best passage alone does not fit, its longest prefix that fits is kept (cut at
// a UTF-8 character boundary, by binary search on the character count).
struct FittedRagPrompt {
  std::string prompt;
  int passages_used = 0;       // the first passages_used of `passages`
  bool last_truncated = false;  // passage passages_used - 1 was cut ...
  size_t last_passage_bytes = 0;  // ... to its first last_passage_bytes bytes
  int prompt_tokens = 0;
};
// The general fitting: `measure(passages)` gives the token count of the prompt holding those passages (the
// caller's prompt form: a text template, a chat conversation...). Returns how many of `passages` fit, and the
// cut of the last one, by the rules above; OUT_OF_RANGE "rag: the prompt without passages is N tokens, more
// than the B ..." when even none fit; measure's errors.
struct PassageFit {
  int passages_used = 0;
  bool last_truncated = false;
  size_t last_passage_bytes = 0;
  int prompt_tokens = 0;
};
using PassageMeasure = std::function<absl::StatusOr<int>(const std::vector<std::string>& passages)>;
absl::StatusOr<PassageFit> FitPassages(const std::vector<std::string>& passages, int budget,
                                       const PassageMeasure& measure);
// The passages `fit` keeps (the last one cut as it says).
std::vector<std::string> FittedPassages(const std::vector<std::string>& passages, const PassageFit& fit);

// The order of the kept passages in a prompt (RagOptions.passage_order). kCanonical: by (document id, chunk
// index), so that requests retrieving the same passages build the same context whatever the ranks; kRank: best
// first. Which passages are kept is decided by rank either way.
enum class PassageOrder { kCanonical, kRank };
struct PassageKey {
  std::string document_id;
  int chunk_index = 0;
};
// The prompt position (0-based) of each of the first `count` passages of `keys` (rank order): position[i] is
// where rank i goes. Ties in the key (a repeated passage) keep rank order.
std::vector<int> PromptPositions(const std::vector<PassageKey>& keys, int count, PassageOrder order);
// `kept` (the first kept.size() passages in rank order, each the one of keys[i]) in prompt order.
std::vector<std::string> ArrangePassages(std::vector<std::string> kept, const std::vector<PassageKey>& keys,
                                         PassageOrder order);
// How a caller puts rank-ordered passages into prompt order (nullptr or identity: rank order).
using PassageArrange = std::function<std::vector<std::string>(std::vector<std::string> rank_ordered)>;

// OUT_OF_RANGE when the template and question alone exceed the budget (FitPassages' message, which gives
// both numbers, plus: shorten the question or lower max_tokens); INVALID_ARGUMENT for a template without {question};
// count_tokens' errors.
absl::StatusOr<FittedRagPrompt> FitRagPrompt(const std::string& question, const std::vector<std::string>& passages,
                                             const std::string& prompt_template, int budget,
                                             const std::function<absl::StatusOr<int>(const std::string&)>& count_tokens,
                                             const PassageArrange& arrange = nullptr);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_PROMPT_BUILDER_H_
