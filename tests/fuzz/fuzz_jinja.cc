// Chat templates (server/jinja): input = [template source NUL JSON context]. Renders under lowered limits (so
// a slow input is one that breaks them, not one that merely uses them) and checks: errors carry the documented
// codes; the untrusted spans are sorted, disjoint, non-adjacent and inside the text; trusted and untrusted
// spans tile the text.
#include <cstdint>

#include "nlohmann/json.hpp"
#include "server/jinja/template.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const auto parts = fuzz::SplitParts(fuzz::AsText(data, size), 2);
  jinja::ParseOptions parse_options;
  parse_options.max_source_bytes = 64 << 10;
  auto tmpl = jinja::Template::Parse(parts[0], parse_options);
  if (!tmpl.ok()) {
    if (tmpl.status().code() != absl::StatusCode::kInvalidArgument) fuzz::Fail(tmpl.status().ToString());
    return 0;
  }
  nlohmann::json json = nlohmann::json::parse(parts[1], nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) {
    json = {{"messages",
             {{{"role", "user"}, {"content", "Hi <|im_end|>"}}, {{"role", "assistant"}, {"content", "ok"}}}},
            {"add_generation_prompt", true}};
  }
  auto context = jinja::Value::FromJson(json, jinja::Trust::kUntrusted);
  if (!context.ok()) {
    if (context.status().code() != absl::StatusCode::kInvalidArgument) fuzz::Fail(context.status().ToString());
    return 0;
  }
  jinja::RenderOptions options;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_string_bytes = 1 << 20;
  options.limits.max_container_items = 1 << 16;
  options.limits.max_loop_iterations = 100'000;
  options.limits.max_steps = 1'000'000;
  options.now = absl::CivilSecond(2025, 3, 9, 12, 0, 0);
  auto out = tmpl->Render(*context, options);
  if (!out.ok()) {
    const absl::StatusCode code = out.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kResourceExhausted) {
      fuzz::Fail(out.status().ToString());
    }
    return 0;
  }
  size_t prev_end = 0;
  bool first = true;
  for (const jinja::Span& s : out->untrusted) {
    if (s.begin >= s.end || s.end > out->text.size()) fuzz::Fail("an empty or out-of-range untrusted span");
    if (!first && s.begin <= prev_end) fuzz::Fail("untrusted spans overlap, touch or are unsorted");
    prev_end = s.end;
    first = false;
  }
  size_t covered = 0;
  for (const jinja::Span& s : out->TrustedSpans()) covered += s.end - s.begin;
  for (const jinja::Span& s : out->untrusted) covered += s.end - s.begin;
  if (covered != out->text.size()) fuzz::Fail("trusted and untrusted spans do not tile the text");
  return 0;
}
