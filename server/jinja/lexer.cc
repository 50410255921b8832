#include "server/jinja/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>

#include "server/jinja/absl_compat.h"
#include "absl/strings/str_cat.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

bool IsDigitChar(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigitChar(c); }

// Byte length of the whitespace code point (Python's \s) at `pos`, or 0.
size_t WhitespaceLen(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  char32_t cp;
  const size_t len = DecodeUtf8(s, pos, &cp);
  return IsPySpace(cp) ? len : 0;
}

size_t SkipWhitespace(std::string_view s, size_t pos) {
  while (size_t len = WhitespaceLen(s, pos)) pos += len;
  return pos;
}

// Python's str.rstrip() (Unicode whitespace).
std::string_view RStripWhitespace(std::string_view s) {
  // Whitespace code points are ASCII or end in a continuation byte; walk back by code point starts.
  std::vector<size_t> starts = CodePointStarts(s);
  size_t end = s.size();
  for (size_t i = starts.size() - 1; i > 0; --i) {
    if (WhitespaceLen(s, starts[i - 1]) == 0) break;
    end = starts[i - 1];
  }
  return s.substr(0, end);
}

bool AllWhitespace(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t len = WhitespaceLen(s, pos);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "[",
                                           "]",  "(",  ")",  "{",  "}",  "<",  ">", "=", ".", ":", "|", ",", ";"};

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& options) : src_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = FindTagStart(pos);
      if (tag == std::string_view::npos) {
        EmitText(pos, src_.substr(pos));
        break;
      }
      const char kind = src_[tag + 1];
      char sign = 0;
      if (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')) sign = src_[tag + 2];
      const size_t after_open = tag + 2 + (sign ? 1 : 0);
      size_t raw_body = 0;
      const bool raw = kind == '%' && MatchRawBegin(after_open, &raw_body);
      EmitText(pos, StripBefore(std::string_view(src_).substr(pos, tag - pos), sign, kind != '{', line_starting));
      if (kind == '#') {
        auto end = LexComment(tag, after_open);
        if (!end.ok()) return end.status();
        pos = *end;
      } else if (raw) {
        auto end = LexRaw(tag, raw_body);
        if (!end.ok()) return end.status();
        pos = *end;
      } else {
        auto end = LexTag(tag, after_open, kind == '{');
        if (!end.ok()) return end.status();
        pos = *end;
      }
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    Token end;
    end.type = TokenType::kEnd;
    Locate(src_.size(), &end);
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void Locate(size_t offset, Token* token) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    token->line = static_cast<int>(line_index + 1);
    token->column = static_cast<int>(offset - line_starts_[line_index]) + 1;
  }

  absl::Status ErrorAt(size_t offset, std::string_view message) const {
    Token t;
    Locate(offset, &t);
    return SyntaxError(t.line, t.column, message);
  }

  // The text before a tag after whitespace control: `-` strips all whitespace; lstrip_blocks strips the
  // blanks between a line start and a block or comment tag unless the tag says `+`.
  std::string_view StripBefore(std::string_view text, char sign, bool block_or_comment, bool line_starting) const {
    if (sign == '-') return RStripWhitespace(text);
    if (sign == '+' || !options_.lstrip_blocks || !block_or_comment) return text;
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting) && l_pos < text.size() && AllWhitespace(text.substr(l_pos))) {
      return text.substr(0, l_pos);
    }
    return text;
  }

  void EmitText(size_t offset, std::string_view text) {
    if (text.empty()) return;
    Token t;
    t.type = TokenType::kText;
    t.value = std::string(text);
    Locate(offset, &t);
    tokens_.push_back(std::move(t));
  }

  // After the closing delimiter at `pos` (already past it): `-` eats all whitespace, trim_blocks one \n.
  size_t ConsumeAfterClose(size_t pos, char sign, bool trim) const {
    if (sign == '-') return SkipWhitespace(src_, pos);
    if (sign == 0 && trim && options_.trim_blocks && pos < src_.size() && src_[pos] == '\n') return pos + 1;
    return pos;
  }

  // `{%[-+]? \s* raw \s* (-%}\s* | %})`, at `pos` just after the opening `{%` and sign.
  bool MatchRawBegin(size_t pos, size_t* body) const {
    pos = SkipWhitespace(src_, pos);
    if (src_.compare(pos, 3, "raw") != 0) return false;
    pos = SkipWhitespace(src_, pos + 3);
    if (src_.compare(pos, 3, "-%}") == 0) {
      *body = SkipWhitespace(src_, pos + 3);
      return true;
    }
    if (src_.compare(pos, 2, "%}") == 0) {
      *body = pos + 2;  // jinja2 does not apply trim_blocks to the raw tag itself
      return true;
    }
    return false;
  }

  absl::StatusOr<size_t> LexComment(size_t tag, size_t content) {
    const size_t close = src_.find("#}", content);
    if (close == std::string::npos) return ErrorAt(tag, "Missing end of comment tag");
    char sign = 0;
    if (close > content && (src_[close - 1] == '-' || src_[close - 1] == '+')) sign = src_[close - 1];
    return ConsumeAfterClose(close + 2, sign, /*trim=*/true);
  }

  absl::StatusOr<size_t> LexRaw(size_t tag, size_t body) {
    for (size_t open = src_.find("{%", body); open != std::string::npos; open = src_.find("{%", open + 1)) {
      size_t p = open + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipWhitespace(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = SkipWhitespace(src_, p + 6);
      char close_sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) close_sign = src_[p++];
      if (src_.compare(p, 2, "%}") != 0) continue;
      const bool line_starting = body > 0 && src_[body - 1] == '\n';
      EmitText(body, StripBefore(std::string_view(src_).substr(body, open - body), sign, true, line_starting));
      return ConsumeAfterClose(p + 2, close_sign, /*trim=*/true);
    }
    return ErrorAt(tag, "Missing end of raw directive");
  }

  // The tokens of a `{{ ... }}` or `{% ... %}` tag; returns the offset after it.
  absl::StatusOr<size_t> LexTag(size_t tag, size_t pos, bool variable) {
    Token begin;
    begin.type = variable ? TokenType::kVarBegin : TokenType::kBlockBegin;
    Locate(tag, &begin);
    tokens_.push_back(std::move(begin));
    std::vector<char> brackets;  // expected closers; the end delimiter only counts when balanced
    while (true) {
      if (brackets.empty()) {
        if (auto end = MatchTagEnd(pos, variable)) return *end;
      }
      if (pos >= src_.size()) {
        return ErrorAt(tag, variable ? "unexpected end of template, expected end of print statement ('}}')"
                                     : "unexpected end of template, expected end of tag ('%}')");
      }
      if (size_t ws = WhitespaceLen(src_, pos)) {
        pos += ws;
        continue;
      }
      Token t;
      Locate(pos, &t);
      const char c = src_[pos];
      if (IsDigitChar(c)) {
        auto next = LexNumber(pos, &t);
        if (!next.ok()) return next.status();
        pos = *next;
      } else if (IsNameStart(c)) {
        size_t end = pos;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        t.type = TokenType::kName;
        t.value = src_.substr(pos, end - pos);
        pos = end;
      } else if (c == '\'' || c == '"') {
        auto next = LexString(pos, &t);
        if (!next.ok()) return next.status();
        pos = *next;
      } else {
        std::string_view op;
        for (std::string_view candidate : kOperators) {
          if (src_.compare(pos, candidate.size(), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) {
          char32_t cp;
          DecodeUtf8(src_, pos, &cp);
          std::string shown;
          AppendUtf8(cp, &shown);
          return ErrorAt(pos, Cat("unexpected char '", shown, "'"));
        }
        if (op == "(" || op == "[" || op == "{") {
          brackets.push_back(op == "(" ? ')' : (op == "[" ? ']' : '}'));
        } else if (op == ")" || op == "]" || op == "}") {
          if (brackets.empty()) return ErrorAt(pos, Cat("unexpected '", op, "'"));
          if (brackets.back() != op[0]) {
            return ErrorAt(pos, Cat("unexpected '", op, "', expected '", std::string(1, brackets.back()), "'"));
          }
          brackets.pop_back();
        }
        t.type = TokenType::kOperator;
        t.value = std::string(op);
        pos += op.size();
      }
      tokens_.push_back(std::move(t));
    }
  }

  // At `pos`: the tag's end delimiter? Emits the end token and returns the offset after it (and after the
  // whitespace it eats).
  std::optional<size_t> MatchTagEnd(size_t pos, bool variable) {
    const std::string_view close = variable ? "}}" : "%}";
    char sign = 0;
    size_t p = pos;
    if (src_.compare(p, 1, "-") == 0 && src_.compare(p + 1, 2, close) == 0) {
      sign = '-';
      ++p;
    } else if (!variable && src_.compare(p, 1, "+") == 0 && src_.compare(p + 1, 2, close) == 0) {
      sign = '+';
      ++p;
    } else if (src_.compare(p, 2, close) != 0) {
      return std::nullopt;
    }
    Token t;
    t.type = variable ? TokenType::kVarEnd : TokenType::kBlockEnd;
    Locate(pos, &t);
    tokens_.push_back(std::move(t));
    return ConsumeAfterClose(p + 2, sign, /*trim=*/!variable);
  }

  // Digits with optional underscores between them.
  size_t ScanDigits(size_t pos, bool (*is_digit)(char)) const {
    size_t end = pos;
    while (end < src_.size()) {
      if (is_digit(src_[end])) {
        ++end;
      } else if (src_[end] == '_' && end > pos && end + 1 < src_.size() && is_digit(src_[end + 1])) {
        ++end;
      } else {
        break;
      }
    }
    return end;
  }

  absl::StatusOr<size_t> LexNumber(size_t pos, Token* t) {
    auto strip = [&](size_t b, size_t e) {
      std::string s;
      for (size_t i = b; i < e; ++i) {
        if (src_[i] != '_') s.push_back(src_[i]);
      }
      return s;
    };
    const char c1 = pos + 1 < src_.size() ? static_cast<char>(src_[pos + 1] | 0x20) : 0;
    if (src_[pos] == '0' && (c1 == 'x' || c1 == 'o' || c1 == 'b')) {
      const int base = c1 == 'x' ? 16 : (c1 == 'o' ? 8 : 2);
      size_t end = pos + 2;
      if (end < src_.size() && src_[end] == '_') ++end;
      auto digit_ok = [&](char ch) {
        const int d = IsDigitChar(ch) ? ch - '0' : ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10 : 99);
        return d < base;
      };
      const size_t digits_begin = end;
      while (end < src_.size() && (digit_ok(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() && digit_ok(src_[end + 1])))) ++end;
      if (end > digits_begin) {
        const std::string digits = strip(digits_begin, end);
        errno = 0;
        const unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
        if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
          return ErrorAt(pos, "integer literal too large");
        }
        t->type = TokenType::kInt;
        t->int_value = static_cast<int64_t>(v);
        return end;
      }
    }
    const size_t int_end = ScanDigits(pos, IsDigitChar);
    size_t end = int_end;
    bool is_float = false;
    const bool after_dot = pos > 0 && src_[pos - 1] == '.';  // jinja2: `a.0.1` is two lookups, no float
    if (!after_dot) {
      if (end + 1 < src_.size() && src_[end] == '.' && IsDigitChar(src_[end + 1])) {
        end = ScanDigits(end + 1, IsDigitChar);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] | 0x20) == 'e') {
        size_t e = end + 1;
        if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
        if (e < src_.size() && IsDigitChar(src_[e])) {
          end = ScanDigits(e, IsDigitChar);
          is_float = true;
        }
      }
    }
    if (is_float) {
      const std::string digits = strip(pos, end);
      t->type = TokenType::kFloat;
      t->float_value = std::strtod(digits.c_str(), nullptr);
      return end;
    }
    // Decimal integers: jinja2 reads "0" alone (leading zeros are not an integer literal).
    if (src_[pos] == '0') {
      end = pos + 1;
      while (end + 1 < src_.size() && src_[end] == '_' && src_[end + 1] == '0') end += 2;
      while (end < src_.size() && src_[end] == '0') ++end;
    } else {
      end = int_end;
    }
    const std::string digits = strip(pos, end);
    errno = 0;
    const long long v = std::strtoll(digits.c_str(), nullptr, 10);
    if (errno == ERANGE) return ErrorAt(pos, "integer literal too large");
    t->type = TokenType::kInt;
    t->int_value = v;
    return end;
  }

  static int HexValue(char c) {
    if (IsDigitChar(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  // A quoted string with Python's escapes (jinja2 decodes string literals with "unicode-escape").
  absl::StatusOr<size_t> LexString(size_t pos, Token* t) {
    const char quote = src_[pos];
    std::string out;
    size_t p = pos + 1;
    while (true) {
      if (p >= src_.size()) return ErrorAt(pos, "unexpected end of string (unclosed quote)");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) return ErrorAt(pos, "unexpected end of string (unclosed quote)");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t v = 0;
          for (int i = 0; i < n; ++i) {
            const int h = p + static_cast<size_t>(i) < src_.size() ? HexValue(src_[p + static_cast<size_t>(i)]) : -1;
            if (h < 0) return ErrorAt(pos, Cat("truncated \\", std::string(1, e), " escape"));
            v = v * 16 + static_cast<uint32_t>(h);
          }
          if (v > 0x10FFFF) return ErrorAt(pos, "illegal Unicode character");
          p += static_cast<size_t>(n);
          AppendUtf8(v, &out);
          break;
        }
        case 'N':
          return ErrorAt(pos, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i) {
              v = v * 8 + static_cast<uint32_t>(src_[p++] - '0');
            }
            AppendUtf8(v, &out);
          } else {  // unknown escapes keep their backslash
            out.push_back('\\');
            out.push_back(e);
          }
          break;
      }
    }
    t->type = TokenType::kString;
    t->value = std::move(out);
    return p + 1;
  }

  const std::string src_;
  const LexOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

absl::Status SyntaxError(int line, int column, std::string_view message) {
  return absl::InvalidArgumentError(
      Cat("template syntax error at line ", line, ", column ", column, ": ", message));
}

std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source, const LexOptions& options) {
  Lexer lexer(NormalizeNewlines(source), options);
  return lexer.Run();
}

}  // namespace qrag::jinja
