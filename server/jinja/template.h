// qrag::jinja — a sandboxed Jinja interpreter for chat templates (Hugging Face `chat_template`s).
//
// It implements the part of jinja2 that real chat templates use (docs/jinja.md lists it), configured as
// transformers' apply_chat_template configures jinja2: an immutable sandbox with trim_blocks and
// lstrip_blocks, loop controls, `{% generation %}`, and the globals raise_exception(msg) and
// strftime_now(fmt). It knows nothing of models, tokenizers or files: a template sees only the context it
// is given and produces text.
//
// Taint: every byte of the output is either trusted (template text, values the server marked trusted) or
// untrusted (anything derived from values marked untrusted, e.g. message contents). RenderedText lists the
// untrusted byte ranges so that the caller parses special tokens only in trusted text.
//
// Errors:
//  - Parse: INVALID_ARGUMENT "template syntax error at line L, column C: ..." (column in bytes).
//  - raise_exception(msg) in the template: INVALID_ARGUMENT whose message is exactly msg and which
//    carries the payload kRaiseExceptionPayload (IsRaiseException()).
//  - Other runtime errors (undefined attribute access, type errors, ...): INVALID_ARGUMENT
//    "template error at line L: ...".
//  - Sandbox limits (RenderLimits) exceeded: RESOURCE_EXHAUSTED "template error at line L: ...".
// A render never crashes, hangs or recurses without bound, whatever the template and context.
//
// Thread safety: a Template is immutable after Parse; Render may run concurrently from many threads.
#ifndef QRAG_SERVER_JINJA_TEMPLATE_H_
#define QRAG_SERVER_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/jinja/options.h"
#include "server/jinja/text.h"
#include "server/jinja/value.h"

namespace qrag::jinja {

struct TemplateBody;  // the parsed syntax tree (template.cc)

// The payload type URL that marks a status raised by the template's own raise_exception().
inline constexpr char kRaiseExceptionPayload[] = "type.googleapis.com/qrag.jinja.RaiseException";

// True when `status` came from the template calling raise_exception(msg); its message is then msg.
bool IsRaiseException(const absl::Status& status);

// The output of a render.
struct RenderedText {
  std::string text;
  // Byte ranges of `text` that derive from untrusted values: sorted, disjoint, not adjacent.
  std::vector<Span> untrusted;

  // True when any byte of [begin, end) is untrusted.
  bool AnyUntrustedIn(size_t begin, size_t end) const;
  // The trusted byte ranges (the complement of `untrusted`), for the tokenizer's special-token pass.
  std::vector<Span> TrustedSpans() const;
};

class Template {
 public:
  // Parses `source` (UTF-8). Errors: see above.
  static absl::StatusOr<Template> Parse(std::string_view source, const ParseOptions& options = {});

  // Renders with `context` (a dict; its keys are the template's variables). Build request data with
  // Value::FromJson(json, Trust::kUntrusted) and server-chosen values (bos_token, ...) as trusted.
  absl::StatusOr<RenderedText> Render(const Value& context, const RenderOptions& options = {}) const;

 private:
  explicit Template(std::shared_ptr<const TemplateBody> body) : body_(std::move(body)) {}

  std::shared_ptr<const TemplateBody> body_;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_TEMPLATE_H_
