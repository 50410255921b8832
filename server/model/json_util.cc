#include "server/model/json_util.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qrag::model {

absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, const std::string& source) {
  return ParseJsonBounded(text, source);
}

const char* JsonTypeName(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a floating-point number";
    case nlohmann::json::value_t::binary: return "binary data";
    case nlohmann::json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

}  // namespace qrag::model
