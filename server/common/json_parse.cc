#include "server/common/json_parse.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qrag {
namespace {

// The deepest array/object nesting in `text`, ignoring brackets inside strings. Stops counting once
// `limit` is exceeded. Malformed input is left to the parser to report.
int MaxNesting(absl::string_view text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > limit) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonBounded(absl::string_view text, const std::string& source) {
  if (MaxNesting(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid JSON: nested deeper than ", kMaxJsonDepth, " levels"));
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON: ", e.what()));
  }
}

}  // namespace qrag
