// JSON parsing for files read from disk (safetensors headers, config.json, shard indexes): parse errors and
// hostile nesting become a Status instead of an exception or a stack overflow.
#ifndef QRAG_SERVER_MODEL_JSON_UTIL_H_
#define QRAG_SERVER_MODEL_JSON_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qrag::model {

// Arrays and objects nested deeper than this are rejected before parsing: every format we read is at most
// a few levels deep, and the limit keeps recursive code (the JSON value destructor) off a deep stack.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON value (surrounding whitespace allowed). INVALID_ARGUMENT naming `source` and
// the parser's message (with the byte offset) on malformed JSON, invalid UTF-8 or nesting deeper than
// kMaxJsonDepth. Never throws.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, const std::string& source);

// The JSON type of `v` in words ("a string", "an array", "a floating-point number", ...), for messages.
const char* JsonTypeName(const nlohmann::json& v);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_JSON_UTIL_H_
