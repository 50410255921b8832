#include "server/jinja/template.h"

#include <algorithm>

#include "server/common/status.h"
#include "server/jinja/parser.h"
#include "server/jinja/renderer.h"

namespace qrag::jinja {

struct TemplateBody {
  Body body;
};

bool IsRaiseException(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kRaiseExceptionPayload).has_value();
}

bool RenderedText::AnyUntrustedIn(size_t begin, size_t end) const {
  auto it = std::upper_bound(untrusted.begin(), untrusted.end(), begin,
                             [](size_t pos, const Span& s) { return pos < s.end; });
  return begin < end && it != untrusted.end() && it->begin < end;
}

std::vector<Span> RenderedText::TrustedSpans() const {
  std::vector<Span> trusted;
  size_t pos = 0;
  for (const Span& s : untrusted) {
    if (s.begin > pos) trusted.push_back({pos, s.begin});
    pos = s.end;
  }
  if (pos < text.size()) trusted.push_back({pos, text.size()});
  return trusted;
}

absl::StatusOr<Template> Template::Parse(std::string_view source, const ParseOptions& options) {
  auto body = std::make_shared<TemplateBody>();
  QRAG_ASSIGN_OR_RETURN(body->body, ParseTemplate(source, options));
  return Template(std::move(body));
}

absl::StatusOr<RenderedText> Template::Render(const Value& context, const RenderOptions& options) const {
  Renderer renderer(body_->body, options);
  QRAG_ASSIGN_OR_RETURN(Text text, renderer.Render(context));
  RenderedText out;
  out.untrusted = text.untrusted();
  out.text = text.bytes();
  return out;
}

}  // namespace qrag::jinja
