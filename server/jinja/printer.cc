#include "server/jinja/printer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "server/jinja/absl_compat.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/jinja/compare.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

absl::Status CheckSize(const Text& out, Budget& budget) {
  if (out.size() > budget.max_string_bytes()) {
    return absl::ResourceExhaustedError(Cat("printed value is longer than the limit of ",
                                                     budget.max_string_bytes(), " bytes"));
  }
  return absl::OkStatus();
}

// Namespaces may refer to themselves; this bounds the recursion of printing them.
absl::Status CheckDepth(int depth) {
  if (depth > kMaxValueDepth) {
    return absl::InvalidArgumentError(Cat("value nested deeper than ", kMaxValueDepth, " levels"));
  }
  return absl::OkStatus();
}

void AppendHex(uint32_t value, int digits, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out->push_back(kHex[(value >> shift) & 0xF]);
}

void AppendStringRepr(const Text& s, Text* out) {
  const std::string_view bytes = s.view();
  const bool has_single = bytes.find('\'') != std::string_view::npos;
  const bool has_double = bytes.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  const bool tainted = s.AnyUntrusted();
  out->AppendMarked(std::string_view(&quote, 1), tainted);
  std::string piece;
  for (size_t pos = 0; pos < bytes.size();) {
    char32_t cp;
    const size_t len = DecodeUtf8(bytes, pos, &cp);
    piece.clear();
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      piece = {'\\', static_cast<char>(cp)};
    } else if (cp == '\n') {
      piece = "\\n";
    } else if (cp == '\r') {
      piece = "\\r";
    } else if (cp == '\t') {
      piece = "\\t";
    } else if (cp == 0xFFFD && len == 1) {  // an invalid byte: show it as Python shows a lone byte
      piece = "\\x";
      AppendHex(static_cast<unsigned char>(bytes[pos]), 2, &piece);
    } else if (!IsPyPrintable(cp)) {
      if (cp < 0x100) {
        piece = "\\x";
        AppendHex(cp, 2, &piece);
      } else if (cp < 0x10000) {
        piece = "\\u";
        AppendHex(cp, 4, &piece);
      } else {
        piece = "\\U";
        AppendHex(cp, 8, &piece);
      }
    }
    if (piece.empty()) {
      out->Append(s, pos, pos + len);
    } else {
      out->AppendMarked(piece, s.AnyUntrustedIn(pos, pos + len));
    }
    pos += len;
  }
  out->AppendMarked(std::string_view(&quote, 1), tainted);
}

void AppendScalar(const Value& v, Text* out) {
  const bool t = v.untrusted();
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->AppendMarked("None", t);
      break;
    case Value::Kind::kBool:
      out->AppendMarked(v.as_bool() ? "True" : "False", t);
      break;
    case Value::Kind::kInt:
      out->AppendMarked(Cat(v.as_int()), t);
      break;
    case Value::Kind::kFloat:
      out->AppendMarked(FloatRepr(v.as_float()), t);
      break;
    default:
      break;
  }
}

absl::Status AppendRepr(const Value& v, Text* out, Budget& budget, int depth);

absl::Status AppendNamespaceRepr(const Value& v, Text* out, Budget& budget, int depth) {
  out->Append("<Namespace {", Trust::kTrusted);
  bool first = true;
  for (const auto& [name, value] : v.ns().attrs) {
    if (!first) out->Append(", ", Trust::kTrusted);
    first = false;
    AppendStringRepr(Text(name), out);
    out->Append(": ", Trust::kTrusted);
    QRAG_RETURN_IF_ERROR(AppendRepr(value, out, budget, depth + 1));
  }
  out->Append("}>", Trust::kTrusted);
  return absl::OkStatus();
}

absl::Status AppendRepr(const Value& v, Text* out, Budget& budget, int depth) {
  QRAG_RETURN_IF_ERROR(budget.Charge(1));
  QRAG_RETURN_IF_ERROR(CheckDepth(depth));
  const bool t = v.untrusted();
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      out->Append("Undefined", Trust::kTrusted);
      break;
    case Value::Kind::kString:
      QRAG_RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(v.text().size() / 64)));
      AppendStringRepr(v.text(), out);
      break;
    case Value::Kind::kList: {
      const bool tuple = v.is_tuple();
      out->AppendMarked(tuple ? "(" : "[", t);
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i > 0) out->AppendMarked(", ", t);
        QRAG_RETURN_IF_ERROR(AppendRepr(v.items()[i], out, budget, depth + 1));
        QRAG_RETURN_IF_ERROR(CheckSize(*out, budget));
      }
      if (tuple && v.items().size() == 1) out->AppendMarked(",", t);
      out->AppendMarked(tuple ? ")" : "]", t);
      break;
    }
    case Value::Kind::kDict: {
      out->AppendMarked("{", t);
      bool first = true;
      for (const auto& [key, value] : v.dict().entries) {
        if (!first) out->AppendMarked(", ", t);
        first = false;
        QRAG_RETURN_IF_ERROR(AppendRepr(key, out, budget, depth + 1));
        out->AppendMarked(": ", t);
        QRAG_RETURN_IF_ERROR(AppendRepr(value, out, budget, depth + 1));
        QRAG_RETURN_IF_ERROR(CheckSize(*out, budget));
      }
      out->AppendMarked("}", t);
      break;
    }
    case Value::Kind::kCallable: {
      const CallableData& c = v.callable();
      switch (c.type) {
        case CallableData::Type::kMacro:
          out->Append(Cat("<Macro '", c.name, "'>"), Trust::kTrusted);
          break;
        case CallableData::Type::kBuiltin:
          out->Append(Cat("<function ", c.name, ">"), Trust::kTrusted);
          break;
        case CallableData::Type::kMethod:
          out->Append(Cat("<built-in method ", c.name, " of ", c.receiver.TypeName(), " object>"),
                      Trust::kTrusted);
          break;
      }
      break;
    }
    case Value::Kind::kNamespace:
      QRAG_RETURN_IF_ERROR(AppendNamespaceRepr(v, out, budget, depth));
      break;
    case Value::Kind::kLoop: {
      const LoopData& loop = v.loop();
      out->Append(Cat("<LoopContext ", loop.index0 + 1, "/", loop.items->items.size(), ">"),
                  Trust::kTrusted);
      break;
    }
    default:
      AppendScalar(v, out);
      break;
  }
  return CheckSize(*out, budget);
}

// ---- JSON ----

void AppendJsonString(const Text& s, bool ensure_ascii, Text* out) {
  const std::string_view bytes = s.view();
  const bool tainted = s.AnyUntrusted();
  out->AppendMarked("\"", tainted);
  std::string piece;
  size_t run_start = 0;  // bytes copied verbatim are appended in runs, keeping their taint
  auto flush = [&](size_t end) {
    if (end > run_start) out->Append(s, run_start, end);
  };
  for (size_t pos = 0; pos < bytes.size();) {
    char32_t cp;
    const size_t len = DecodeUtf8(bytes, pos, &cp);
    piece.clear();
    switch (cp) {
      case '"':
        piece = "\\\"";
        break;
      case '\\':
        piece = "\\\\";
        break;
      case '\n':
        piece = "\\n";
        break;
      case '\r':
        piece = "\\r";
        break;
      case '\t':
        piece = "\\t";
        break;
      case '\b':
        piece = "\\b";
        break;
      case '\f':
        piece = "\\f";
        break;
      default:
        if (cp < 0x20) {
          piece = "\\u";
          AppendHex(cp, 4, &piece);
        } else if (ensure_ascii && cp >= 0x80) {
          if (cp >= 0x10000) {
            const char32_t v = cp - 0x10000;
            piece = "\\u";
            AppendHex(0xD800 + (v >> 10), 4, &piece);
            piece += "\\u";
            AppendHex(0xDC00 + (v & 0x3FF), 4, &piece);
          } else {
            piece = "\\u";
            AppendHex(cp, 4, &piece);
          }
        }
        break;
    }
    if (!piece.empty()) {
      flush(pos);
      out->AppendMarked(piece, s.AnyUntrustedIn(pos, pos + len));
      run_start = pos + len;
    }
    pos += len;
  }
  flush(bytes.size());
  out->AppendMarked("\"", tainted);
}

class JsonWriter {
 public:
  JsonWriter(const JsonOptions& options, Budget& budget)
      : options_(options),
        budget_(budget),
        item_separator_(options.item_separator.value_or(options.indent ? "," : ", ")) {}

  absl::Status Write(const Value& v, int depth, Text* out) {
    QRAG_RETURN_IF_ERROR(budget_.Charge(1));
    QRAG_RETURN_IF_ERROR(CheckDepth(depth));
    const bool t = v.untrusted();
    switch (v.kind()) {
      case Value::Kind::kNone:
        out->AppendMarked("null", t);
        break;
      case Value::Kind::kBool:
        out->AppendMarked(v.as_bool() ? "true" : "false", t);
        break;
      case Value::Kind::kInt:
        out->AppendMarked(Cat(v.as_int()), t);
        break;
      case Value::Kind::kFloat:
        out->AppendMarked(JsonFloat(v.as_float()), t);
        break;
      case Value::Kind::kString:
        QRAG_RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(v.text().size() / 64)));
        AppendJsonString(v.text(), options_.ensure_ascii, out);
        break;
      case Value::Kind::kList:
        QRAG_RETURN_IF_ERROR(WriteList(v, depth, out));
        break;
      case Value::Kind::kDict:
        QRAG_RETURN_IF_ERROR(WriteDict(v, depth, out));
        break;
      default:
        return absl::InvalidArgumentError(
            Cat("Object of type ", v.TypeName(), " is not JSON serializable"));
    }
    return CheckSize(*out, budget_);
  }

 private:
  static std::string JsonFloat(double f) {
    if (std::isnan(f)) return "NaN";
    if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
    return FloatRepr(f);
  }

  // Newline and indentation before an element at nesting `level` (nothing when not indenting).
  void Break(int level, bool t, Text* out) {
    if (!options_.indent) return;
    std::string s = "\n";
    for (int i = 0; i < level; ++i) s += *options_.indent;
    out->AppendMarked(s, t);
  }

  absl::Status WriteList(const Value& v, int depth, Text* out) {
    const bool t = v.untrusted();
    if (v.items().empty()) {
      out->AppendMarked("[]", t);
      return absl::OkStatus();
    }
    out->AppendMarked("[", t);
    for (size_t i = 0; i < v.items().size(); ++i) {
      if (i > 0) out->AppendMarked(item_separator_, t);
      Break(depth + 1, t, out);
      QRAG_RETURN_IF_ERROR(Write(v.items()[i], depth + 1, out));
    }
    Break(depth, t, out);
    out->AppendMarked("]", t);
    return absl::OkStatus();
  }

  absl::StatusOr<Text> KeyText(const Value& key) {
    const bool t = key.untrusted();
    switch (key.kind()) {
      case Value::Kind::kString:
        return key.text();
      case Value::Kind::kNone:
        return Text("null", t ? Trust::kUntrusted : Trust::kTrusted);
      case Value::Kind::kBool:
        return Text(key.as_bool() ? "true" : "false", t ? Trust::kUntrusted : Trust::kTrusted);
      case Value::Kind::kInt:
        return Text(Cat(key.as_int()), t ? Trust::kUntrusted : Trust::kTrusted);
      case Value::Kind::kFloat:
        return Text(JsonFloat(key.as_float()), t ? Trust::kUntrusted : Trust::kTrusted);
      default:
        return absl::InvalidArgumentError(
            Cat("keys must be str, int, float, bool or None, not ", key.TypeName()));
    }
  }

  absl::Status WriteDict(const Value& v, int depth, Text* out) {
    const bool t = v.untrusted();
    const auto& entries = v.dict().entries;
    if (entries.empty()) {
      out->AppendMarked("{}", t);
      return absl::OkStatus();
    }
    std::vector<size_t> order(entries.size());
    std::iota(order.begin(), order.end(), 0);
    if (options_.sort_keys) {
      absl::Status error;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (!error.ok()) return false;
        auto c = Compare(entries[a].first, entries[b].first, "<", budget_);
        if (!c.ok()) {
          error = c.status();
          return false;
        }
        return *c == -1;
      });
      QRAG_RETURN_IF_ERROR(error);
    }
    out->AppendMarked("{", t);
    bool first = true;
    for (size_t i : order) {
      if (!first) out->AppendMarked(item_separator_, t);
      first = false;
      Break(depth + 1, t, out);
      QRAG_ASSIGN_OR_RETURN(Text key, KeyText(entries[i].first));
      AppendJsonString(key, options_.ensure_ascii, out);
      out->AppendMarked(options_.key_separator, t);
      QRAG_RETURN_IF_ERROR(Write(entries[i].second, depth + 1, out));
    }
    Break(depth, t, out);
    out->AppendMarked("}", t);
    return absl::OkStatus();
  }

  const JsonOptions& options_;
  Budget& budget_;
  std::string item_separator_;
};

}  // namespace

std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // "-d.ddde+XX"
  std::string sign;
  if (!sci.empty() && sci.front() == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exponent);
  const int decpt = exponent + 1;  // position of the decimal point relative to the digits
  const int n = static_cast<int>(digits.size());
  std::string out = sign;
  if (decpt > -4 && decpt <= 16) {  // Python's repr switches to exponent notation outside this range
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= n) {
      out += digits;
      out.append(static_cast<size_t>(decpt - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt));
      out += '.';
      out += digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out += digits[0];
  if (n > 1) {
    out += '.';
    out += digits.substr(1);
  }
  const int exp10 = decpt - 1;
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  out += exp_buf;
  return out;
}

absl::StatusOr<Text> ToStr(const Value& value, Budget& budget) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return Text();
    case Value::Kind::kString:
      return value.text();
    case Value::Kind::kNone:
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat: {
      Text out;
      AppendScalar(value, &out);
      return out;
    }
    default:
      return ToRepr(value, budget);
  }
}

absl::StatusOr<Text> ToRepr(const Value& value, Budget& budget) {
  Text out;
  QRAG_RETURN_IF_ERROR(AppendRepr(value, &out, budget, 0));
  return out;
}

absl::StatusOr<Text> ToJson(const Value& value, const JsonOptions& options, Budget& budget) {
  Text out;
  JsonWriter writer(options, budget);
  QRAG_RETURN_IF_ERROR(writer.Write(value, 0, &out));
  return out;
}

}  // namespace qrag::jinja
