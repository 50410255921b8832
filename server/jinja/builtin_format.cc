// String formatting: Python's printf-style `format % args` and str.format().
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/jinja/absl_compat.h"
#include "server/common/status.h"
#include "server/jinja/builtins.h"
#include "server/jinja/printer.h"
#include "server/jinja/renderer.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

absl::Status FormatError(std::string_view message) { return absl::InvalidArgumentError(ToAbsl(message)); }

struct Spec {
  bool left = false;        // '-' / '<'
  bool zero = false;        // '0'
  bool alternate = false;   // '#'
  char sign = 0;            // '+', ' ' or 0
  char fill = ' ';
  char align = 0;           // '<', '>', '^', '=' or 0 (type default)
  size_t width = 0;
  std::optional<size_t> precision;
  char type = 0;
};

// Pads `body` to spec.width code points with `fill`; padding is untrusted when `untrusted`.
Text Pad(Text body, const Spec& spec, char default_align, bool untrusted) {
  const size_t len = CodePointCount(body.view());
  if (spec.width <= len) return body;
  const size_t n = spec.width - len;
  const char align = spec.align != 0 ? spec.align : (spec.left ? '<' : default_align);
  const std::string fill(1, spec.fill);
  auto pad = [&](size_t k) {
    std::string s;
    for (size_t i = 0; i < k; ++i) s += fill;
    return Text(std::move(s), untrusted ? Trust::kUntrusted : Trust::kTrusted);
  };
  Text out;
  if (align == '<') {
    out = std::move(body);
    out.Append(pad(n));
  } else if (align == '^') {
    out = pad(n / 2);
    out.Append(body);
    out.Append(pad(n - n / 2));
  } else {
    out = pad(n);
    out.Append(body);
  }
  return out;
}

// An integer as Python's %d/%x/%o and format(int, 'd'/'x'/'o'/'b') write it.
std::string FormatInteger(int64_t value, char type, const Spec& spec) {
  const uint64_t magnitude = value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  const int base = (type == 'x' || type == 'X') ? 16 : (type == 'o' ? 8 : (type == 'b' ? 2 : 10));
  const char* digits_set = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string digits;
  uint64_t m = magnitude;
  do {
    digits.insert(digits.begin(), digits_set[m % static_cast<uint64_t>(base)]);
    m /= static_cast<uint64_t>(base);
  } while (m != 0);
  if (spec.precision && digits.size() < *spec.precision) digits.insert(0, *spec.precision - digits.size(), '0');
  char sign = value < 0 ? '-' : spec.sign;
  const char* prefix = "";
  if (spec.alternate && base != 10) prefix = type == 'X' ? "0X" : (type == 'x' ? "0x" : (type == 'o' ? "0o" : "0b"));
  const size_t prefix_len = std::char_traits<char>::length(prefix);
  const size_t body = (sign != 0 ? 1 : 0) + prefix_len + digits.size();
  std::string out;
  out.reserve(std::max(body, spec.width));
  if (sign != 0) out.push_back(sign);
  out.append(prefix, prefix_len);
  if (spec.zero && !spec.left && spec.width > body) out.append(spec.width - body, '0');
  out.append(digits);
  return out;
}

// A float as C/Python printf writes it (e, E, f, F, g, G).
std::string FormatFloat(double value, char type, const Spec& spec) {
  std::string fmt = "%";
  if (spec.left) fmt += '-';
  if (spec.sign != 0) fmt += spec.sign;
  if (spec.alternate) fmt += '#';
  if (spec.zero && std::isfinite(value)) fmt += '0';
  fmt += Cat(spec.width, ".", spec.precision.value_or(6));
  fmt += type;
  const int n = std::snprintf(nullptr, 0, fmt.c_str(), value);
  std::string out(static_cast<size_t>(std::max(n, 0)), '\0');
  std::snprintf(out.data(), out.size() + 1, fmt.c_str(), value);
  return out;
}

absl::Status CheckSpecSize(const Spec& spec, Renderer& r) {
  if (spec.width > r.budget().max_string_bytes() || spec.precision.value_or(0) > r.budget().max_string_bytes()) {
    return absl::ResourceExhaustedError("format width or precision exceeds the template's string limit");
  }
  return absl::OkStatus();
}

// One %-conversion of `arg`.
absl::StatusOr<Text> PercentOne(Renderer& r, char conv, Spec spec, const Value& arg) {
  QRAG_RETURN_IF_ERROR(CheckSpecSize(spec, r));
  const bool untrusted = arg.untrusted();
  const Trust t = untrusted ? Trust::kUntrusted : Trust::kTrusted;
  switch (conv) {
    case 's':
    case 'r':
    case 'a': {
      QRAG_ASSIGN_OR_RETURN(Text s, conv == 's' ? r.Str(arg) : ToRepr(arg, r.budget()));
      if (spec.precision) {
        const std::vector<size_t> starts = CodePointStarts(s.view());
        if (*spec.precision + 1 < starts.size()) s = s.Slice(0, starts[*spec.precision]);
      }
      return Pad(std::move(s), spec, '>', untrusted);
    }
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
      int64_t value;
      if (arg.is_int() || arg.is_bool()) {
        value = arg.as_int();
      } else if (arg.is_float() && (conv == 'd' || conv == 'i' || conv == 'u')) {
        const double f = arg.as_float();
        if (!std::isfinite(f)) return FormatError("cannot convert float infinity or NaN to integer");
        if (std::fabs(f) >= 9.2e18) return FormatError("integer overflow (template integers are 64-bit)");
        value = static_cast<int64_t>(f);
      } else {
        return FormatError(Cat("%", std::string(1, conv), " format: ",
                                        conv == 'd' || conv == 'i' || conv == 'u' ? "a real number" : "an integer",
                                        " is required, not ", arg.TypeName()));
      }
      const char type = conv == 'i' || conv == 'u' ? 'd' : conv;
      return Pad(Text(FormatInteger(value, type, spec), t), spec, '>', untrusted);
    }
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
      if (!arg.is_number()) return FormatError(Cat("must be real number, not ", arg.TypeName()));
      return Text(FormatFloat(arg.AsDouble(), conv, spec), t);
    case 'c': {
      std::string s;
      if (arg.is_int() || arg.is_bool()) {
        if (arg.as_int() < 0 || arg.as_int() > 0x10FFFF) return FormatError("%c arg not in range(0x110000)");
        AppendUtf8(static_cast<char32_t>(arg.as_int()), &s);
        return Pad(Text(std::move(s), t), spec, '>', untrusted);
      }
      if (arg.is_string() && CodePointCount(arg.text().view()) == 1) return Pad(arg.text(), spec, '>', untrusted);
      return FormatError("%c requires int or char");
    }
    default:
      return FormatError(Cat("unsupported format character '", std::string(1, conv), "'"));
  }
}

size_t ParseDecimal(std::string_view s, size_t* pos) {
  size_t v = 0;
  while (*pos < s.size() && s[*pos] >= '0' && s[*pos] <= '9') {
    v = std::min<size_t>(v * 10 + static_cast<size_t>(s[*pos] - '0'), size_t{1} << 40);
    ++*pos;
  }
  return v;
}

// Python's format(value, spec) for the common specs.
absl::StatusOr<Text> FormatSpec(Renderer& r, const Value& value, std::string_view spec_text) {
  Spec spec;
  size_t p = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (spec_text.size() >= 2 && is_align(spec_text[1])) {
    spec.fill = spec_text[0];
    spec.align = spec_text[1];
    p = 2;
  } else if (!spec_text.empty() && is_align(spec_text[0])) {
    spec.align = spec_text[0];
    p = 1;
  }
  if (p < spec_text.size() && (spec_text[p] == '+' || spec_text[p] == '-' || spec_text[p] == ' ')) {
    if (spec_text[p] != '-') spec.sign = spec_text[p];
    ++p;
  }
  if (p < spec_text.size() && spec_text[p] == '#') spec.alternate = true, ++p;
  if (p < spec_text.size() && spec_text[p] == '0') {
    spec.zero = true;
    if (spec.align == 0) spec.fill = '0', spec.align = '=';
    ++p;
  }
  spec.width = ParseDecimal(spec_text, &p);
  if (p < spec_text.size() && spec_text[p] == '.') {
    ++p;
    spec.precision = ParseDecimal(spec_text, &p);
  }
  if (p < spec_text.size()) spec.type = spec_text[p++];
  if (p != spec_text.size()) return FormatError(Cat("Invalid format specifier '", spec_text, "'"));
  QRAG_RETURN_IF_ERROR(CheckSpecSize(spec, r));
  const bool untrusted = value.untrusted();
  const Trust t = untrusted ? Trust::kUntrusted : Trust::kTrusted;
  // '=' (pad after the sign) is only meaningful for numbers; zero fill is done by the number formatters.
  Spec padding = spec;
  if (padding.align == '=') padding.align = '>';
  if (value.is_string() || (spec.type == 's')) {
    if (!value.is_string()) return FormatError("Unknown format code 's' for a non-string");
    Text s = value.text();
    if (spec.precision) {
      const std::vector<size_t> starts = CodePointStarts(s.view());
      if (*spec.precision + 1 < starts.size()) s = s.Slice(0, starts[*spec.precision]);
    }
    return Pad(std::move(s), padding, '<', untrusted);
  }
  if ((value.is_int() || value.is_bool()) && (spec.type == 0 || spec.type == 'd' || spec.type == 'x' ||
                                              spec.type == 'X' || spec.type == 'o' || spec.type == 'b')) {
    Spec int_spec = spec;
    int_spec.precision.reset();
    int_spec.zero = spec.align == '=' && spec.fill == '0';
    std::string digits = FormatInteger(value.as_int(), spec.type == 0 ? 'd' : spec.type, int_spec);
    return Pad(Text(std::move(digits), t), padding, '>', untrusted);
  }
  if (value.is_number()) {
    const char type = spec.type == 0 ? (spec.precision ? 'g' : 0) : spec.type;
    std::string s;
    if (type == 0) {
      s = FloatRepr(value.AsDouble());
      if (spec.sign != 0 && value.AsDouble() >= 0) s.insert(0, 1, spec.sign);
    } else if (type == '%') {
      Spec f = spec;
      f.width = 0;
      f.zero = false;
      s = FormatFloat(value.AsDouble() * 100, 'f', f) + "%";
    } else if (type == 'e' || type == 'E' || type == 'f' || type == 'F' || type == 'g' || type == 'G') {
      Spec f = spec;
      f.width = 0;
      f.zero = false;
      s = FormatFloat(value.AsDouble(), type, f);
    } else {
      return FormatError(Cat("Unknown format code '", std::string(1, type), "' for a number"));
    }
    return Pad(Text(std::move(s), t), padding, '>', untrusted);
  }
  if (!spec_text.empty()) {
    return FormatError(Cat("unsupported format string passed to ", value.TypeName(), ".__format__"));
  }
  return r.Str(value);
}

}  // namespace

absl::StatusOr<Value> PercentFormat(Renderer& r, const Value& format, const Value& args) {
  const Text& f = format.text();
  const std::string_view s = f.view();
  std::vector<Value> positional;
  const Value* mapping = nullptr;
  bool mapping_like = false;  // Python lets a lone mapping (or sequence) argument go unconsumed
  if (args.is_tuple()) {
    positional = args.items();
  } else {
    positional.push_back(args);
    if (args.is_dict()) mapping = &args;
    mapping_like = args.is_dict() || args.is_list();
  }
  size_t next = 0;
  bool used_key = false;
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') continue;
    out.Append(f, run, i);
    if (++i >= s.size()) return FormatError("incomplete format");
    if (s[i] == '%') {
      out.Append(f, i, i + 1);
      run = i + 1;
      continue;
    }
    const Value* arg = nullptr;
    Value keyed;
    if (s[i] == '(') {
      if (mapping == nullptr) return FormatError("format requires a mapping");
      int depth = 1;
      const size_t key_start = ++i;
      while (i < s.size() && depth > 0) {
        if (s[i] == '(') ++depth;
        if (s[i] == ')') --depth;
        ++i;
      }
      if (depth != 0) return FormatError("incomplete format key");
      const std::string_view key = s.substr(key_start, i - 1 - key_start);
      const Value* found = mapping->dict().Find(key);
      if (found == nullptr) return FormatError(Cat("KeyError: '", key, "'"));
      keyed = *found;
      arg = &keyed;
      used_key = true;
    }
    Spec spec;
    for (; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '-') {
        spec.left = true;
      } else if (c == '0') {
        spec.zero = true;
      } else if (c == '#') {
        spec.alternate = true;
      } else if (c == '+') {
        spec.sign = '+';
      } else if (c == ' ') {
        if (spec.sign == 0) spec.sign = ' ';
      } else {
        break;
      }
    }
    auto star = [&]() -> absl::StatusOr<int64_t> {
      if (next >= positional.size()) return FormatError("not enough arguments for format string");
      const Value& w = positional[next++];
      if (!w.is_int() && !w.is_bool()) return FormatError("* wants int");
      return w.as_int();
    };
    if (i < s.size() && s[i] == '*') {
      QRAG_ASSIGN_OR_RETURN(int64_t w, star());
      if (w < 0) spec.left = true;
      spec.width = static_cast<size_t>(w < 0 ? -w : w);
      ++i;
    } else {
      spec.width = ParseDecimal(s, &i);
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (i < s.size() && s[i] == '*') {
        QRAG_ASSIGN_OR_RETURN(int64_t p, star());
        spec.precision = static_cast<size_t>(std::max<int64_t>(p, 0));
        ++i;
      } else {
        spec.precision = ParseDecimal(s, &i);
      }
    }
    while (i < s.size() && (s[i] == 'h' || s[i] == 'l' || s[i] == 'L')) ++i;
    if (i >= s.size()) return FormatError("incomplete format");
    if (arg == nullptr) {
      if (next >= positional.size()) return FormatError("not enough arguments for format string");
      arg = &positional[next++];
    }
    auto piece = PercentOne(r, s[i], spec, *arg);
    if (!piece.ok()) {
      if (piece.status().code() == absl::StatusCode::kInvalidArgument &&
          piece.status().message().rfind("unsupported format character", 0) == 0) {
        return FormatError(Cat(piece.status().message(), " at index ", i));
      }
      return piece.status();
    }
    out.Append(*piece);
    QRAG_RETURN_IF_ERROR(r.budget().ChargeGrowth(out.size(), &charged));
    run = i + 1;
  }
  out.Append(f, run, s.size());
  if (!used_key && !mapping_like && next < positional.size()) {
    return FormatError("not all arguments converted during string formatting");
  }
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> StrFormat(Renderer& r, const Value& format, const CallArgs& args) {
  const Text& f = format.text();
  const std::string_view s = f.view();
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  size_t run = 0;
  int auto_index = 0;
  bool manual = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '}') {
      if (i + 1 < s.size() && s[i + 1] == '}') {
        out.Append(f, run, i + 1);
        run = ++i + 1;
        continue;
      }
      return FormatError("Single '}' encountered in format string");
    }
    if (c != '{') continue;
    out.Append(f, run, i);
    if (i + 1 < s.size() && s[i + 1] == '{') {
      out.Append(f, i, i + 1);
      run = ++i + 1;
      continue;
    }
    const size_t close = s.find('}', i + 1);
    if (close == std::string_view::npos) return FormatError("Single '{' encountered in format string");
    std::string_view field = s.substr(i + 1, close - i - 1);
    if (field.find('{') != std::string_view::npos) return FormatError("nested format fields are not supported");
    std::string_view spec;
    if (const size_t colon = field.find(':'); colon != std::string_view::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    char conversion = 0;
    if (const size_t bang = field.find('!'); bang != std::string_view::npos) {
      if (bang + 2 != field.size()) return FormatError("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field = field.substr(0, bang);
    }
    // The argument: a name or index, then .attribute / [key] lookups.
    size_t name_end = std::min(field.find('.'), field.find('['));
    if (name_end == std::string_view::npos) name_end = field.size();
    const std::string_view name = field.substr(0, name_end);
    Value value;
    if (name.empty() || (name.find_first_not_of("0123456789") == std::string_view::npos)) {
      size_t index;
      if (name.empty()) {
        if (manual) return FormatError("cannot switch from manual field specification to automatic field numbering");
        index = static_cast<size_t>(auto_index++);
      } else {
        if (auto_index > 0) return FormatError("cannot switch from automatic field numbering to manual field specification");
        manual = true;
        size_t p = 0;
        index = ParseDecimal(name, &p);
      }
      if (index >= args.positional.size()) return FormatError("Replacement index out of range for positional args tuple");
      value = args.positional[index];
    } else {
      auto it = std::find_if(args.keyword.begin(), args.keyword.end(), [&](const auto& kw) { return kw.first == name; });
      if (it == args.keyword.end()) return FormatError(Cat("KeyError: '", name, "'"));
      value = it->second;
    }
    for (size_t p = name_end; p < field.size();) {
      if (field[p] == '.') {
        size_t e = p + 1;
        while (e < field.size() && field[e] != '.' && field[e] != '[') ++e;
        QRAG_ASSIGN_OR_RETURN(value, r.GetAttr(value, field.substr(p + 1, e - p - 1)));
        p = e;
      } else {
        const size_t e = field.find(']', p);
        if (e == std::string_view::npos) return FormatError("Missing ']' in format string");
        const std::string_view key = field.substr(p + 1, e - p - 1);
        if (!key.empty() && key.find_first_not_of("0123456789") == std::string_view::npos) {
          size_t q = 0;
          QRAG_ASSIGN_OR_RETURN(value, r.GetItem(value, Value::Int(static_cast<int64_t>(ParseDecimal(key, &q)))));
        } else {
          QRAG_ASSIGN_OR_RETURN(value, r.GetItem(value, Value::String(std::string(key))));
        }
        p = e + 1;
      }
    }
    if (conversion == 'r' || conversion == 'a') {
      QRAG_ASSIGN_OR_RETURN(Text t, ToRepr(value, r.budget()));
      value = Value::String(std::move(t));
    } else if (conversion == 's') {
      QRAG_ASSIGN_OR_RETURN(Text t, r.Str(value));
      value = Value::String(std::move(t));
    } else if (conversion != 0) {
      return FormatError(Cat("Unknown conversion specifier ", std::string(1, conversion)));
    }
    QRAG_ASSIGN_OR_RETURN(Text piece, FormatSpec(r, value, spec));
    out.Append(piece);
    QRAG_RETURN_IF_ERROR(r.budget().ChargeGrowth(out.size(), &charged));
    i = close;
    run = close + 1;
  }
  out.Append(f, run, s.size());
  return r.NewString(std::move(out));
}

}  // namespace qrag::jinja
