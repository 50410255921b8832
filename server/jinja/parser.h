// Parser: tokens -> syntax tree, following jinja2's grammar and operator precedence (including its
// quirks: `**` is left-associative, filters bind tighter than unary minus's operand, `~` sits between
// `+`/`-` and `*`/`/`).
#ifndef QRAG_SERVER_JINJA_PARSER_H_
#define QRAG_SERVER_JINJA_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "server/jinja/ast.h"
#include "server/jinja/options.h"

namespace qrag::jinja {

// The statements of `source`. INVALID_ARGUMENT naming line and column for syntax errors, unsupported tags
// (include, import, extends, block, call, ...), nesting deeper than options.max_nesting_depth, and
// `break`/`continue` outside a loop.
absl::StatusOr<Body> ParseTemplate(std::string_view source, const ParseOptions& options);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_PARSER_H_
