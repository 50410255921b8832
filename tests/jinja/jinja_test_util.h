// Helpers for the Jinja engine's tests.
#ifndef QRAG_TESTS_JINJA_JINJA_TEST_UTIL_H_
#define QRAG_TESTS_JINJA_JINJA_TEST_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/jinja/template.h"

namespace qrag::jinja::testing {

// Parses and renders `source` with `untrusted` (a JSON object of untrusted variables) and `trusted`
// (trusted ones).
inline absl::StatusOr<RenderedText> RenderFull(std::string_view source,
                                               const nlohmann::ordered_json& untrusted = nlohmann::ordered_json::object(),
                                               const nlohmann::ordered_json& trusted = nlohmann::ordered_json::object(),
                                               const RenderOptions& options = {}, const ParseOptions& parse = {}) {
  auto tmpl = Template::Parse(source, parse);
  if (!tmpl.ok()) return tmpl.status();
  std::vector<std::pair<Value, Value>> vars;
  for (const auto& [trust, json] : {std::pair{Trust::kUntrusted, &untrusted}, std::pair{Trust::kTrusted, &trusted}}) {
    for (auto it = json->begin(); it != json->end(); ++it) {
      auto v = Value::FromJson(it.value(), trust);
      if (!v.ok()) return v.status();
      vars.emplace_back(Value::String(it.key()), *std::move(v));
    }
  }
  auto context = Value::Dict(std::move(vars));
  if (!context.ok()) return context.status();
  return tmpl->Render(*context, options);
}

// The rendered text, or "ERROR: <status>".
inline std::string Render(std::string_view source,
                          const nlohmann::ordered_json& untrusted = nlohmann::ordered_json::object(),
                          const nlohmann::ordered_json& trusted = nlohmann::ordered_json::object()) {
  auto r = RenderFull(source, untrusted, trusted);
  return r.ok() ? r->text : "ERROR: " + r.status().ToString();
}

// The rendered text with every untrusted span bracketed as [[...]], e.g. "A[[user text]]B".
inline std::string Marked(const RenderedText& r) {
  std::string out;
  size_t pos = 0;
  for (const Span& s : r.untrusted) {
    out.append(r.text, pos, s.begin - pos);
    out += "[[";
    out.append(r.text, s.begin, s.end - s.begin);
    out += "]]";
    pos = s.end;
  }
  out.append(r.text, pos, std::string::npos);
  return out;
}

inline std::string RenderMarked(std::string_view source,
                                const nlohmann::ordered_json& untrusted = nlohmann::ordered_json::object(),
                                const nlohmann::ordered_json& trusted = nlohmann::ordered_json::object()) {
  auto r = RenderFull(source, untrusted, trusted);
  return r.ok() ? Marked(*r) : "ERROR: " + r.status().ToString();
}

}  // namespace qrag::jinja::testing

#endif  // QRAG_TESTS_JINJA_JINJA_TEST_UTIL_H_
