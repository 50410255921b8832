#include "server/engine/request_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace qrag::engine {

absl::Status CheckMaxTokens(int max_tokens) {
  if (max_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be > 0 (got ", max_tokens, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckFitsContext(int prompt_tokens, int max_tokens, int context) {
  if (absl::Status s = CheckMaxTokens(max_tokens); !s.ok()) return s;
  if (prompt_tokens >= context) {
    return absl::OutOfRangeError(absl::StrCat("prompt is ", prompt_tokens, " tokens; the context holds ", context,
                                              " (prompt plus at least one generated token): shorten the prompt"));
  }
  if (max_tokens > context - prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens ", max_tokens, " plus the prompt's ", prompt_tokens,
                                                   " tokens exceeds the context of ", context,
                                                   " tokens; use max_tokens <= ", context - prompt_tokens));
  }
  return absl::OkStatus();
}

int FitMaxTokens(int max_tokens, int prompt_tokens, int context) {
  if (prompt_tokens >= context) return std::min(max_tokens, 1);  // CheckFitsContext names the prompt
  return std::min(max_tokens, context - prompt_tokens);
}

int AnswerReserve(int max_tokens, bool fits_context) {
  return fits_context ? std::min(max_tokens, kFitAnswerReserve) : max_tokens;
}

absl::Status CancellationStatus(absl::Time deadline, absl::Time now, const char* where) {
  if (deadline - kDeadlineCancelSlack <= now) return absl::DeadlineExceededError(absl::StrCat("deadline exceeded ", where));
  return absl::CancelledError(absl::StrCat("request cancelled by the client ", where));
}

absl::Status CheckPromptIds(absl::Span<const int32_t> ids, int32_t vocab_size) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace qrag::engine
