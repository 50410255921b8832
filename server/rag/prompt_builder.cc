#include "server/rag/prompt_builder.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/common/status.h"

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

namespace {

// Byte offsets of the character boundaries of `text` (UTF-8), including 0 and text.size().
std::vector<size_t> CharBoundaries(const std::string& text) {
  std::vector<size_t> b;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) b.push_back(i);
  }
  b.push_back(text.size());
  return b;
}

}  // namespace

absl::StatusOr<PassageFit> FitPassages(const std::vector<std::string>& passages, int budget,
                                       const PassageMeasure& measure) {
  // Whole passages: the most that fit. The prompt only grows with each passage added, so after the common
  // case (all fit) a binary search finds the count with O(log k) tokenizations rather than k.
  const int n = static_cast<int>(passages.size());
  auto attempt = [&](int used) -> absl::StatusOr<PassageFit> {
    QRAG_ASSIGN_OR_RETURN(int tokens, measure({passages.begin(), passages.begin() + used}));
    return PassageFit{.passages_used = used, .prompt_tokens = tokens};
  };
  QRAG_ASSIGN_OR_RETURN(PassageFit out, attempt(n));
  if (out.prompt_tokens <= budget) return out;
  QRAG_ASSIGN_OR_RETURN(out, attempt(0));
  if (out.prompt_tokens > budget) {
    return absl::OutOfRangeError(absl::StrCat("rag: the prompt without passages is ", out.prompt_tokens,
                                              " tokens, more than the ", budget,
                                              " the generator's context leaves after max_tokens"));
  }
  for (int lo = 0, hi = n; hi - lo > 1;) {  // `lo` passages fit (out holds them), `hi` do not
    const int mid = lo + (hi - lo) / 2;
    QRAG_ASSIGN_OR_RETURN(PassageFit f, attempt(mid));
    if (f.prompt_tokens <= budget) {
      lo = mid;
      out = f;
    } else {
      hi = mid;
    }
  }
  if (out.passages_used > 0 || passages.empty()) return out;
  // Not even the best passage fits whole: keep its longest fitting prefix (if any character fits).
  const std::vector<size_t> bounds = CharBoundaries(passages[0]);
  size_t lo = 0, hi = bounds.size() - 1;  // prefix of bounds[lo] bytes fits; bounds[hi] does not
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    QRAG_ASSIGN_OR_RETURN(int tokens, measure({passages[0].substr(0, bounds[mid])}));
    if (tokens <= budget) {
      lo = mid;
      out = {.passages_used = 1, .last_truncated = true, .last_passage_bytes = bounds[mid], .prompt_tokens = tokens};
    } else {
      hi = mid;
    }
  }
  return out;
}

std::vector<std::string> FittedPassages(const std::vector<std::string>& passages, const PassageFit& fit) {
  std::vector<std::string> kept(passages.begin(), passages.begin() + fit.passages_used);
  if (fit.last_truncated && !kept.empty()) kept.back().resize(fit.last_passage_bytes);
  return kept;
}

std::vector<int> PromptPositions(const std::vector<PassageKey>& keys, int count, PassageOrder order) {
  std::vector<int> by_position(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) by_position[static_cast<size_t>(i)] = i;
  if (order == PassageOrder::kCanonical) {
    std::stable_sort(by_position.begin(), by_position.end(), [&](int a, int b) {
      const PassageKey& x = keys[static_cast<size_t>(a)];
      const PassageKey& y = keys[static_cast<size_t>(b)];
      return std::tie(x.document_id, x.chunk_index) < std::tie(y.document_id, y.chunk_index);
    });
  }
  std::vector<int> position(static_cast<size_t>(count));
  for (int p = 0; p < count; ++p) position[static_cast<size_t>(by_position[static_cast<size_t>(p)])] = p;
  return position;
}

std::vector<std::string> ArrangePassages(std::vector<std::string> kept, const std::vector<PassageKey>& keys,
                                         PassageOrder order) {
  const std::vector<int> position = PromptPositions(keys, static_cast<int>(kept.size()), order);
  std::vector<std::string> out(kept.size());
  for (size_t i = 0; i < kept.size(); ++i) out[static_cast<size_t>(position[i])] = std::move(kept[i]);
  return out;
}

absl::StatusOr<FittedRagPrompt> FitRagPrompt(const std::string& question, const std::vector<std::string>& passages,
                                             const std::string& prompt_template, int budget,
                                             const std::function<absl::StatusOr<int>(const std::string&)>& count_tokens,
                                             const PassageArrange& arrange) {
  auto arranged = [&](std::vector<std::string> kept) { return arrange ? arrange(std::move(kept)) : kept; };
  // A template without {question} is refused before anything is counted.
  QRAG_RETURN_IF_ERROR(BuildRagPrompt(question, {}, prompt_template).status());
  absl::StatusOr<PassageFit> fit =
      FitPassages(passages, budget, [&](const std::vector<std::string>& kept) -> absl::StatusOr<int> {
        QRAG_ASSIGN_OR_RETURN(std::string prompt, BuildRagPrompt(question, arranged(kept), prompt_template));
        return count_tokens(prompt);
      });
  if (absl::IsOutOfRange(fit.status())) {  // the template and question alone do not fit
    return absl::OutOfRangeError(absl::StrCat(fit.status().message(), ": shorten the question or lower max_tokens"));
  }
  QRAG_RETURN_IF_ERROR(fit.status());
  QRAG_ASSIGN_OR_RETURN(std::string prompt, BuildRagPrompt(question, arranged(FittedPassages(passages, *fit)), prompt_template));
  return FittedRagPrompt{.prompt = std::move(prompt), .passages_used = fit->passages_used,
                         .last_truncated = fit->last_truncated, .last_passage_bytes = fit->last_passage_bytes,
                         .prompt_tokens = fit->prompt_tokens};
}

}  // namespace qrag::rag
