// JSON from outside the process (files, request fields, JSONL lines): parse errors and hostile nesting become
// a Status instead of an exception or a stack overflow (nlohmann's parser is iterative, but its destructor and
// serializer recurse once per level).
#ifndef QRAG_SERVER_COMMON_JSON_PARSE_H_
#define QRAG_SERVER_COMMON_JSON_PARSE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace qrag {

// Arrays and objects nested deeper than this are rejected before parsing: every format qrag reads is at most
// a few levels deep, and the limit keeps the recursive code of a JSON value off a deep stack.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON value (surrounding whitespace allowed). INVALID_ARGUMENT beginning with `source`
// and ": invalid JSON: " and the parser's message (with the byte offset) on malformed JSON, invalid UTF-8 or
// nesting deeper than kMaxJsonDepth. Never throws.
absl::StatusOr<nlohmann::json> ParseJsonBounded(absl::string_view text, const std::string& source);

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_JSON_PARSE_H_
