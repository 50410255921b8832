// OpenAI's HTTP API shapes, mapped onto qrag's own requests: the JSON bodies of /v1/chat/completions,
// /v1/completions and /v1/embeddings become a qrag.v1.ChatRequest / GenerateRequest (validated afterwards by
// the same code as gRPC's, validation.h) plus the few options that only shape the HTTP answer (stream,
// include_usage, the logprobs format); results and errors become OpenAI's response, chunk and error objects.
//
// Pure functions (no I/O), unit-tested field by field (tests/api/openai_json_test.cc).
//
// Parameters (docs/openai-api.md lists them all):
//   - OpenAI's, served: model, messages, prompt, max_tokens / max_completion_tokens, temperature, top_p, stop,
//     seed, n (1 only), stream, stream_options.include_usage, logprobs / top_logprobs, echo (false only),
//     suffix (empty only), best_of (1 only); user, metadata, store, service_tier, safety_identifier,
//     prompt_cache_key, prompt_cache_retention are accepted without effect;
//   - OpenAI's, refused with a message unless left at their no-op value: frequency_penalty, presence_penalty
//     (qrag's penalty is repetition_penalty), logit_bias, tools / tool_choice / functions, response_format other
//     than text, audio, modalities other than text, prediction;
//   - qrag's extensions: top_k, min_p, repetition_penalty, add_generation_prompt, and `rag` (collection, top_k,
//     min_score, filter, prompt_template) as in qrag.v1.RagOptions;
//   - anything else: 400 "unrecognized request argument" (as OpenAI does), so a misspelt parameter is never
//     silently ignored. JSON null means "not given".
// Errors are INVALID_ARGUMENT naming the parameter; ParamOf reads it back for the error object's "param".
#ifndef QRAG_SERVER_API_OPENAI_JSON_H_
#define QRAG_SERVER_API_OPENAI_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "qrag/v1/inference.pb.h"
#include "server/engine/engine.h"

namespace qrag::api::openai {

// How the HTTP answer is shaped (not part of the qrag request).
struct AnswerOptions {
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  bool logprobs = false;       // the answer carries logprobs
  int top_logprobs = 0;        // alternatives per token in the answer (the engine is asked for at least 1)
  bool max_tokens_given = false;  // false: the answer may use what the context leaves (chat only)
};

struct ChatCompletionRequest {
  qrag::v1::ChatRequest request;
  AnswerOptions answer;
};

struct CompletionRequest {
  qrag::v1::GenerateRequest request;
  AnswerOptions answer;
};

struct EmbeddingsRequest {
  std::string model;  // empty: the server's embedder
  std::vector<std::string> inputs;
  bool base64 = false;  // encoding_format "base64": little-endian float32 bytes, base64-encoded
  std::optional<int> dimensions;
};

// The bodies of the three POST endpoints. INVALID_ARGUMENT (with the parameter, see ParamOf) for malformed
// JSON, wrong types, unknown or unsupported parameters.
absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body);
absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body);
absl::StatusOr<EmbeddingsRequest> ParseEmbeddingsRequest(std::string_view body);

// INVALID_ARGUMENT with `message`, about `param` (ParamOf reads it back).
absl::Status ParamError(std::string_view param, std::string message);

// The OpenAI parameter an error is about: the one attached by the parsers above, else the field a qrag
// validation message begins with ("temperature must be ...", "stop[2] is empty", "messages[0].role is ...")
// translated to OpenAI's name; empty when none.
std::string ParamOf(const absl::Status& status, bool chat);

// The HTTP status of a qrag status code: INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION 400;
// UNAUTHENTICATED 401; PERMISSION_DENIED 403; NOT_FOUND 404; RESOURCE_EXHAUSTED 429; CANCELLED 499;
// UNIMPLEMENTED 501; UNAVAILABLE 503; DEADLINE_EXCEEDED 504; others 500.
int HttpStatusOf(absl::StatusCode code);

// {"error": {"message", "type", "param", "code"}}: type from the HTTP status (invalid_request_error,
// authentication_error, permission_error, not_found_error, rate_limit_error, server_error, ...); code is
// "model_not_found" for an unknown model, else the lowercase gRPC code name.
nlohmann::json ErrorObject(const absl::Status& status, std::string_view param);

// JSON text that never throws: invalid UTF-8 (a token that ends inside a character) is replaced by U+FFFD.
std::string Dump(const nlohmann::json& value);

// One generated token with its text and alternatives, as the answer reports it.
struct TokenInfo {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};

// What a finished (or streaming) generation reports, in engine terms.
struct Result {
  std::string id;        // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;   // Unix seconds
  std::string model;
  std::string text;
  std::string finish_reason;  // "stop" / "length"; empty while streaming
  std::vector<TokenInfo> logprobs;
  engine::Usage usage;
  nlohmann::json qrag;   // qrag's additions (passages, timings); null: none
};

// Whole answers.
nlohmann::json ChatCompletionObject(const Result& result, const AnswerOptions& answer);
nlohmann::json CompletionObject(const Result& result, const AnswerOptions& answer);

// One streamed chunk: `result` holds the new text (and its logprobs); finish_reason set on the last chunk
// with text. `first` adds the assistant role (chat). With include_usage every chunk has "usage": null.
nlohmann::json ChatCompletionChunk(const Result& result, const AnswerOptions& answer, bool first);
nlohmann::json CompletionChunk(const Result& result, const AnswerOptions& answer);
// The usage chunk of stream_options.include_usage: no choices, the usage.
nlohmann::json UsageChunk(const Result& result, bool chat);

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"},
// "energy_joules", "tensor_ops"}.
nlohmann::json UsageObject(const engine::Usage& usage);

// /v1/embeddings' answer; `values` is [inputs, dim] row-major.
nlohmann::json EmbeddingsObject(const std::string& model, const std::vector<float>& values, int dim,
                                bool base64, int64_t prompt_tokens);

// Standard base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

}  // namespace qrag::api::openai

#endif  // QRAG_SERVER_API_OPENAI_JSON_H_
