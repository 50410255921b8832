// The prompt of a retrieval-augmented request: retrieved passages, numbered, then the question.
//
// Default template (RagPromptOptions::kDefaultTemplate):
//   "Context:\n[1] <passage 1>\n[2] <passage 2>\n\nQuestion: <question>\nAnswer:"
// A custom template uses the placeholders {context} (the numbered passages, one per line) and {question};
// INVALID_ARGUMENT when {question} is missing.
#ifndef QRAG_SERVER_RAG_PROMPT_BUILDER_H_
#define QRAG_SERVER_RAG_PROMPT_BUILDER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qrag::rag {

inline constexpr char kDefaultRagTemplate[] = "Context:\n{context}\n\nQuestion: {question}\nAnswer:";

absl::StatusOr<std::string> BuildRagPrompt(const std::string& question, const std::vector<std::string>& passages,
                                           const std::string& prompt_template);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_PROMPT_BUILDER_H_
