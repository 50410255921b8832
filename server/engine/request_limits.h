// The length rules of a generation request, in one place for every driver (the serving engine, the offline
// Generator, the API's validation and Generate's rag option).
#ifndef QRAG_SERVER_ENGINE_REQUEST_LIMITS_H_
#define QRAG_SERVER_ENGINE_REQUEST_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace qrag::engine {

// INVALID_ARGUMENT unless max_tokens > 0.
absl::Status CheckMaxTokens(int max_tokens);

// The prompt and max_tokens against a context of `context` tokens: OUT_OF_RANGE when the prompt leaves no
// room for one generated token ("shorten the prompt"); INVALID_ARGUMENT when prompt + max_tokens exceeds the
// context, naming the largest max_tokens that fits. Never computes prompt + max_tokens (max_tokens may be
// near INT32_MAX). Includes CheckMaxTokens.
absl::Status CheckFitsContext(int prompt_tokens, int max_tokens, int context);

// Requests whose max_tokens only caps the answer (EngineRequest::max_tokens_fits_context: OpenAI's API
// without max_tokens) generate at most what the context leaves after the prompt: min(max_tokens,
// context - prompt_tokens), at least 1 (CheckFitsContext then names a prompt that leaves no room).
int FitMaxTokens(int max_tokens, int prompt_tokens, int context);

// The tokens to keep free for the answer when passages are fitted into a prompt: max_tokens, or at most
// kFitAnswerReserve for a request whose max_tokens only caps the answer.
inline constexpr int kFitAnswerReserve = 512;
int AnswerReserve(int max_tokens, bool fits_context);

// Prompt token ids given by the caller (a rendered chat template): INVALID_ARGUMENT naming the first id outside
// the vocabulary [0, vocab_size) and its position.
absl::Status CheckPromptIds(absl::Span<const int32_t> ids, int32_t vocab_size);

// How a request that was cancelled at `now` ended, for the client's status and qrag_requests_total alike.
// A client's deadline fires on the client first and reaches the server as a plain cancellation (gRPC sends
// the same RST_STREAM for both), somewhat before the server's copy of the deadline, which was computed when
// the call arrived. A cancellation within kDeadlineCancelSlack of the deadline is therefore the deadline:
// DEADLINE_EXCEEDED; earlier ones are the client's: CANCELLED. `where` ends the message ("while generating").
inline constexpr absl::Duration kDeadlineCancelSlack = absl::Milliseconds(250);
absl::Status CancellationStatus(absl::Time deadline, absl::Time now, const char* where);

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_REQUEST_LIMITS_H_
