// JSON parsing for files read from disk (safetensors headers, config.json, shard indexes): parse errors and
// hostile nesting become a Status instead of an exception or a stack overflow.
#ifndef QRAG_SERVER_MODEL_JSON_UTIL_H_
#define QRAG_SERVER_MODEL_JSON_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/common/json_parse.h"

namespace qrag::model {

// qrag::ParseJsonBounded (server/common/json_parse.h): INVALID_ARGUMENT naming `source` on malformed JSON,
// invalid UTF-8 or nesting deeper than kMaxJsonDepth. Never throws.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, const std::string& source);

// The JSON type of `v` in words ("a string", "an array", "a floating-point number", ...), for messages.
const char* JsonTypeName(const nlohmann::json& v);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_JSON_UTIL_H_
