#include "client/ingest_files.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/json_parse.h"

namespace qrag::client {

absl::StatusOr<std::optional<qrag::v1::Document>> ParseJsonlDocumentLine(std::string_view line,
                                                                         std::string_view where,
                                                                         std::string_view id_prefix,
                                                                         std::string_view source) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return std::nullopt;
  const std::string at(where);
  // Malformed JSON, invalid UTF-8 and nesting deeper than kMaxJsonDepth are errors naming the line.
  absl::StatusOr<nlohmann::json> parsed = ParseJsonBounded(absl::string_view(line.data(), line.size()), at);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(at, ": not a JSON object"));
  const char* id_key = j.contains("id") ? "id" : "_id";
  const auto id = j.find(id_key);
  if (id == j.end() || !(id->is_string() || id->is_number_integer())) {
    return absl::InvalidArgumentError(absl::StrCat(at, ": needs a string \"id\" (or \"_id\")"));
  }
  const auto text = j.find("text");
  if (text == j.end() || !text->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ": needs a string \"text\""));
  }
  qrag::v1::Document d;
  d.set_id(absl::StrCat(std::string(id_prefix),
                        id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>())));
  std::string body = text->get<std::string>();
  const auto title = j.find("title");
  if (title != j.end() && title->is_string() && !title->get<std::string>().empty()) {
    body = absl::StrCat(title->get<std::string>(), " ", body);
  }
  d.set_text(std::move(body));
  const auto metadata = j.find("metadata");
  if (metadata != j.end() && metadata->is_object()) {
    for (const auto& [k, v] : metadata->items()) {
      (*d.mutable_metadata())[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
  }
  (*d.mutable_metadata())["source"] = std::string(source);
  return d;
}

}  // namespace qrag::client
