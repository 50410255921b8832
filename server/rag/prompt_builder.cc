#include "server/rag/prompt_builder.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace qrag::rag {

absl::StatusOr<std::string> BuildRagPrompt(const std::string& question, const std::vector<std::string>& passages,
                                           const std::string& prompt_template) {
  const std::string& tmpl = prompt_template.empty() ? std::string(kDefaultRagTemplate) : prompt_template;
  if (tmpl.find("{question}") == std::string::npos) {
    return absl::InvalidArgumentError("rag.prompt_template must contain {question}");
  }
  std::string context;
  for (size_t i = 0; i < passages.size(); ++i) {
    absl::StrAppend(&context, i == 0 ? "" : "\n", "[", i + 1, "] ", passages[i]);
  }
  // One pass, so that braces inside passages or the question are never expanded.
  return absl::StrReplaceAll(tmpl, {{"{context}", context}, {"{question}", question}});
}

}  // namespace qrag::rag
