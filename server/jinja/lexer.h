// Lexer: template source -> tokens, following jinja2 3.1's lexer with trim_blocks and lstrip_blocks.
//
// Newlines (\r\n, \r, \n) are normalised to \n and one trailing newline of the source is dropped (jinja2's
// keep_trailing_newline=False). Literal text between tags is returned already whitespace-controlled:
// `{%-`/`{{-`/`{#-` strip the whitespace before a tag, `-%}`/`-}}`/`-#}` the whitespace after it;
// trim_blocks removes the first newline after a block or comment tag, lstrip_blocks the blanks between the
// start of a line and a block or comment tag (`{%+` / `+%}` disable them for one tag). `{% raw %}` bodies
// come back as literal text. Comments produce no tokens.
#ifndef QRAG_SERVER_JINJA_LEXER_H_
#define QRAG_SERVER_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qrag::jinja {

enum class TokenType : uint8_t {
  kText,        // literal template text (value)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword (value)
  kString,      // string literal, unescaped (value)
  kInt,         // int_value
  kFloat,       // float_value
  kOperator,    // value: "+", "//", "(", ...
  kEnd,         // end of the template
};

struct Token {
  TokenType type = TokenType::kEnd;
  std::string value;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// INVALID_ARGUMENT "template syntax error at line L, column C: message".
absl::Status SyntaxError(int line, int column, std::string_view message);

// The tokens of `source`, ending with one kEnd token; INVALID_ARGUMENT (SyntaxError) for an unclosed
// tag, comment, raw block or string, an unbalanced bracket, or a character no token starts with.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexOptions& options);

// `source` with \r\n and \r turned into \n and one trailing newline removed, as jinja2 reads a template.
std::string NormalizeNewlines(std::string_view source);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_LEXER_H_
