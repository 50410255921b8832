// Request validation for the Inference service: wire bytes -> qrag.v1.GenerateRequest -> engine request.
// The one implementation of the request rules for every front end: gRPC parses the wire bytes, other front
// ends (HTTP) build the same qrag.v1.GenerateRequest from their own syntax and call ValidateGenerateRequest;
// the sampling ranges themselves are engine::ValidateSamplingParams'.
//
// Pure functions (no I/O, no engine, no clock), so every rule is unit-tested field by field. Each error is
// an absl::Status whose message names the proto field, the value received and the allowed range, so a
// client can fix its request without reading server logs:
//   NOT_FOUND         model names no served model;
//   INVALID_ARGUMENT  everything else (empty / oversized / non-UTF-8 prompt, max_tokens <= 0, sampling
//                     parameters out of range, bad stop strings, logprobs out of range, unparsable bytes).
// What needs the tokenizer or the context length (prompt longer than the context: OUT_OF_RANGE; max_tokens
// past it: INVALID_ARGUMENT) is checked by engine::Engine::Submit.
//
// Thread-safe (pure functions).
#ifndef QRAG_SERVER_API_VALIDATION_H_
#define QRAG_SERVER_API_VALIDATION_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "qrag/v1/inference.pb.h"
#include "server/chat/chat_format.h"
#include "server/engine/engine.h"

namespace qrag::api {

struct ValidationOptions {
  std::vector<std::string> models;  // names of the served models; models[0] is the default (empty model)
  int max_prompt_bytes = 1 << 20;   // --max-prompt-bytes
  int max_logprobs = 20;            // engine::EngineOptions::max_logprobs
  int default_max_tokens = 16;      // used when max_tokens is unset (documented in inference.proto)
  int max_stop_strings = 16;
  int max_stop_bytes = 256;         // per stop string
};

struct ValidatedRequest {
  std::string model;               // the resolved model name (the default when the request left it empty)
  engine::EngineRequest request;   // deadline left at InfiniteFuture: the caller sets it from the call
};

// Parses a serialized GenerateRequest. proto3 string fields must be UTF-8; when a client sends invalid UTF-8
// anyway, protobuf's parser rejects the whole message, so this names the offending field and byte
// ("prompt: invalid UTF-8 at byte 3") instead of gRPC's generic deserialization error. INVALID_ARGUMENT.
absl::StatusOr<qrag::v1::GenerateRequest> ParseGenerateRequest(std::string_view wire);

// `requested` when it is served, the default model when it is empty, NOT_FOUND (listing the served names)
// otherwise. `models` must not be empty.
absl::StatusOr<std::string> ResolveModel(std::string_view requested, const std::vector<std::string>& models);

// Checks every field of `request` against its documented range and converts it. Check order: model, prompt,
// max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, stop, logprobs (the first failure is
// reported).
absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const qrag::v1::GenerateRequest& request,
                                                         const ValidationOptions& options);

// A chat request: the conversation to render with the model's template, and everything else as for Generate.
struct ValidatedChat {
  std::string model;
  engine::EngineRequest request;  // sampling, stop, logprobs, max_tokens; the prompt is set once rendered
  std::vector<chat::Message> messages;
  bool add_generation_prompt = true;
};

// ParseGenerateRequest for a serialized ChatRequest (naming messages[i].role / .content for invalid UTF-8).
absl::StatusOr<qrag::v1::ChatRequest> ParseChatRequest(std::string_view wire);

// model; messages (not empty, known roles, contents UTF-8 and together at most max_prompt_bytes); then the
// fields shared with GenerateRequest by ValidateGenerateRequest's rules.
absl::StatusOr<ValidatedChat> ValidateChatRequest(const qrag::v1::ChatRequest& request,
                                                  const ValidationOptions& options);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_VALIDATION_H_
