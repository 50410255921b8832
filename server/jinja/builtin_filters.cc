// Filters (`value | name(args)`), with jinja2 3.1's semantics and transformers' tojson.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/jinja/absl_compat.h"
#include "server/common/status.h"
#include "server/jinja/builtins.h"
#include "server/jinja/compare.h"
#include "server/jinja/printer.h"
#include "server/jinja/renderer.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

using FilterFn = absl::StatusOr<Value> (*)(Renderer&, const Value&, const CallArgs&);

Trust TrustOf(bool untrusted) { return untrusted ? Trust::kUntrusted : Trust::kTrusted; }

absl::Status FilterError(std::string_view filter, std::string_view message) {
  return absl::InvalidArgumentError(Cat("filter '", filter, "': ", message));
}

// The filter's input as a string (jinja2's soft_str: str() of anything, "" for undefined).
absl::StatusOr<Value> AsString(Renderer& r, const Value& v) {
  if (v.is_string()) return v;
  QRAG_ASSIGN_OR_RETURN(Text t, r.Str(v));
  return Value::String(std::move(t));
}

absl::StatusOr<Value> StringMethodFilter(Renderer& r, const Value& input, std::string_view method,
                                         const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(Value s, AsString(r, input));
  return CallMethod(r, s, method, args);
}

absl::StatusOr<Value> Abs(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("abs", args, {}).status());
  const Trust t = TrustOf(v.untrusted());
  if (v.is_float()) return Value::Float(std::fabs(v.as_float()), t);
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) return absl::InvalidArgumentError("integer overflow in abs()");
    return Value::Int(v.as_int() < 0 ? -v.as_int() : v.as_int(), t);
  }
  if (v.is_undefined()) return UndefinedError(v);
  return absl::InvalidArgumentError(Cat("bad operand type for abs(): '", v.TypeName(), "'"));
}

absl::StatusOr<Value> Attr(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("attr", args, {"name"}));
  const Value name = a.Get(0, Value());
  if (!name.is_string()) return FilterError("attr", "the attribute name must be a string");
  // Python's getattr() only: unlike `v.name`, no fallback to the item v['name'].
  if (v.is_namespace() || v.is_loop() || HasMethod(v, name.text().view())) return r.GetAttr(v, name.text().view());
  if (v.is_undefined()) return UndefinedError(v);
  return Value::Undefined(Cat("'", v.TypeName(), " object' has no attribute '", name.text().view(), "'"));
}

absl::StatusOr<Value> Capitalize(Renderer& r, const Value& v, const CallArgs& args) {
  return StringMethodFilter(r, v, "capitalize", args);
}
absl::StatusOr<Value> Lower(Renderer& r, const Value& v, const CallArgs& args) {
  return StringMethodFilter(r, v, "lower", args);
}
absl::StatusOr<Value> Upper(Renderer& r, const Value& v, const CallArgs& args) {
  return StringMethodFilter(r, v, "upper", args);
}

absl::StatusOr<Value> Default(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("default", args, {"default_value", "boolean"}));
  const bool boolean = a.Get(1, Value::Bool(false)).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) return a.Get(0, Value::String(""));
  return v;
}

// Lower-cases strings for the case-insensitive comparisons of sort, unique, min, max, dictsort.
Value IgnoreCase(const Value& v) {
  if (!v.is_string()) return v;
  return Value::String(MapCodePoints(v.text(), ToLower));
}

// A key extractor: the item itself or its attribute path, case-folded unless case_sensitive.
absl::StatusOr<Value> SortKey(Renderer& r, const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = item;
  if (attribute.is_string()) {
    QRAG_ASSIGN_OR_RETURN(key, GetAttrPath(r, item, attribute.text().view()));
  } else if (attribute.is_int()) {
    QRAG_ASSIGN_OR_RETURN(key, r.GetItem(item, attribute));
  }
  return case_sensitive ? key : IgnoreCase(key);
}

// Stable sort of `items` by `keys` (parallel vectors), with Python's ordering errors.
absl::Status SortByKeys(Renderer& r, std::vector<Value>* items, std::vector<Value>* keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status error;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (!error.ok()) return false;
    auto c = Compare((*keys)[reverse ? b : a], (*keys)[reverse ? a : b], "<", r.budget());
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c == -1;
  });
  QRAG_RETURN_IF_ERROR(error);
  std::vector<Value> sorted;
  sorted.reserve(items->size());
  for (size_t i : order) sorted.push_back(std::move((*items)[i]));
  *items = std::move(sorted);
  return absl::OkStatus();
}

absl::StatusOr<Value> DictSort(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("dictsort", args, {"case_sensitive", "by", "reverse"}));
  if (!v.is_dict()) return FilterError("dictsort", "can only sort a mapping");
  const bool case_sensitive = a.Get(0, Value::Bool(false)).Truthy();
  const Value& by = a.Get(1, Value::String("key"));
  const bool by_value = by.is_string() && by.text().view() == "value";
  if (!by_value && !(by.is_string() && by.text().view() == "key")) {
    return FilterError("dictsort", "You can only sort by either 'key' or 'value'");
  }
  std::vector<Value> items, keys;
  for (const auto& [key, value] : v.dict().entries) {
    QRAG_ASSIGN_OR_RETURN(Value pair, r.NewTuple({key, value}, TrustOf(v.untrusted())));
    items.push_back(std::move(pair));
    keys.push_back(case_sensitive ? (by_value ? value : key) : IgnoreCase(by_value ? value : key));
  }
  QRAG_RETURN_IF_ERROR(SortByKeys(r, &items, &keys, a.Get(2, Value::Bool(false)).Truthy()));
  return r.NewList(std::move(items), TrustOf(v.untrusted()));
}

absl::StatusOr<Value> Escape(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("escape", args, {}).status());
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  Text out;
  size_t run = 0;
  const std::string_view b = s.view();
  for (size_t i = 0; i < b.size(); ++i) {
    std::string_view rep;
    switch (b[i]) {
      case '&': rep = "&amp;"; break;
      case '<': rep = "&lt;"; break;
      case '>': rep = "&gt;"; break;
      case '"': rep = "&#34;"; break;
      case '\'': rep = "&#39;"; break;
      default: continue;
    }
    out.Append(s, run, i);
    out.AppendMarked(rep, s.IsUntrusted(i));
    run = i + 1;
  }
  out.Append(s, run, b.size());
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> First(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("first", args, {}).status());
  if (v.is_list()) {
    if (v.items().empty()) return Value::Undefined("No first item, sequence was empty.");
    return v.items().front();
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

absl::StatusOr<Value> Last(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("last", args, {}).status());
  if (v.is_list()) {
    if (v.items().empty()) return Value::Undefined("No last item, sequence was empty.");
    return v.items().back();
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

// Python's float(str): surrounding whitespace allowed, the whole rest must be a number.
bool ParseFloat(std::string_view s, double* out) {
  std::string str(s);
  const char* begin = str.c_str();
  while (*begin == ' ' || (*begin >= '\t' && *begin <= '\r')) ++begin;
  if (*begin == '\0') return false;
  if (begin[0] == '0' && (begin[1] == 'x' || begin[1] == 'X')) return false;  // strtod reads hex, Python does not
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(begin, &end);
  if (end == begin) return false;
  while (*end == ' ' || (*end >= '\t' && *end <= '\r')) ++end;
  if (*end != '\0') return false;
  *out = d;
  return true;
}

// Python's int(str, base): whitespace, sign, underscores between digits, an optional 0x/0o/0b prefix that
// matches the base.
bool ParseInt(std::string_view s, int base, int64_t* out) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || (s[b] >= '\t' && s[b] <= '\r'))) ++b;
  while (e > b && (s[e - 1] == ' ' || (s[e - 1] >= '\t' && s[e - 1] <= '\r'))) --e;
  bool negative = false;
  if (b < e && (s[b] == '+' || s[b] == '-')) negative = s[b++] == '-';
  if (e - b >= 2 && s[b] == '0') {
    const char p = static_cast<char>(s[b + 1] | 0x20);
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) b += 2;
  }
  if (b >= e) return false;
  uint64_t value = 0;
  bool prev_digit = false;
  for (size_t i = b; i < e; ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!prev_digit || i + 1 == e) return false;
      prev_digit = false;
      continue;
    }
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
      d = (c | 0x20) - 'a' + 10;
    } else {
      return false;
    }
    if (d >= base) return false;
    if (value > (static_cast<uint64_t>(INT64_MAX) + 1 - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return false;
    }
    value = value * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    prev_digit = true;
  }
  if (!negative && value > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = negative ? static_cast<int64_t>(0 - value) : static_cast<int64_t>(value);
  return true;
}

absl::StatusOr<Value> Int(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("int", args, {"default", "base"}));
  const Value fallback = a.Get(0, Value::Int(0));
  const Value& base_v = a.Get(1, Value::Int(10));
  const Trust t = TrustOf(v.untrusted());
  if (v.is_int() || v.is_bool()) return Value::Int(v.as_int(), t);
  if (v.is_float()) {
    const double f = v.as_float();
    if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return fallback;
    return Value::Int(static_cast<int64_t>(f), t);
  }
  if (v.is_string()) {
    const int base = base_v.is_int() ? static_cast<int>(base_v.as_int()) : 10;
    int64_t i;
    if (base >= 2 && base <= 36 && ParseInt(v.text().view(), base, &i)) return Value::Int(i, t);
    double f;
    if (ParseFloat(v.text().view(), &f) && std::isfinite(f) && std::fabs(f) < 9.2e18) {
      return Value::Int(static_cast<int64_t>(f), t);
    }
  }
  return fallback;
}

absl::StatusOr<Value> Float(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("float", args, {"default"}));
  const Trust t = TrustOf(v.untrusted());
  if (v.is_number()) return Value::Float(v.AsDouble(), t);
  double f;
  if (v.is_string() && ParseFloat(v.text().view(), &f)) return Value::Float(f, t);
  return a.Get(0, Value::Float(0.0));
}

absl::StatusOr<Value> Format(Renderer& r, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return FilterError("format", "can't handle positional and keyword arguments at the same time");
  }
  QRAG_ASSIGN_OR_RETURN(Value s, AsString(r, v));
  if (!args.keyword.empty()) {
    std::vector<std::pair<Value, Value>> entries;
    for (const auto& [name, value] : args.keyword) entries.emplace_back(Value::String(name), value);
    QRAG_ASSIGN_OR_RETURN(Value mapping, r.NewDict(std::move(entries)));
    return PercentFormat(r, s, mapping);
  }
  QRAG_ASSIGN_OR_RETURN(Value tuple, r.NewTuple(args.positional));
  return PercentFormat(r, s, tuple);
}

absl::StatusOr<Value> Indent(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("indent", args, {"width", "first", "blank"}));
  const Value& width = a.Get(0, Value::Int(4));
  const bool first = a.Get(1, Value::Bool(false)).Truthy();
  const bool blank = a.Get(2, Value::Bool(false)).Truthy();
  Text indention;
  if (width.is_string()) {
    indention = width.text();
  } else if (width.is_int() || width.is_bool()) {
    const int64_t n = std::max<int64_t>(0, width.as_int());
    if (static_cast<uint64_t>(n) > r.budget().max_string_bytes()) {
      return absl::ResourceExhaustedError("indent width exceeds the template's string limit");
    }
    indention = Text(std::string(static_cast<size_t>(n), ' '), TrustOf(width.untrusted()));
  } else {
    return FilterError("indent", "width must be an integer or a string");
  }
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  s.Append("\n", Trust::kTrusted);  // as jinja2 does, so that a trailing newline survives splitlines()
  const std::vector<LineRange> lines = PySplitLines(s.view());
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  if (first) out.Append(indention);
  for (size_t i = 0; i < lines.size(); ++i) {
    const LineRange& line = lines[i];
    if (i > 0) {
      const LineRange& prev = lines[i - 1];
      out.AppendMarked("\n", s.AnyUntrustedIn(prev.end, prev.break_end));
      if (blank || line.end > line.begin) out.Append(indention);
    }
    out.Append(s, line.begin, line.end);
    QRAG_RETURN_IF_ERROR(r.budget().ChargeGrowth(out.size(), &charged));
  }
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> Items(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("items", args, {}).status());
  if (v.is_undefined()) return r.NewList({});
  if (!v.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  return CallMethod(r, v, "items", {});
}

absl::StatusOr<Value> Join(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("join", args, {"d", "attribute"}));
  QRAG_ASSIGN_OR_RETURN(Value sep, AsString(r, a.Get(0, Value::String(""))));
  const Value& attribute = a.Get(1, Value::None());
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!attribute.is_none()) {
      QRAG_ASSIGN_OR_RETURN(item, SortKey(r, item, attribute, /*case_sensitive=*/true));
    }
    QRAG_ASSIGN_OR_RETURN(Text t, r.Str(item));
    if (i > 0) out.Append(sep.text());
    out.Append(t);
    QRAG_RETURN_IF_ERROR(r.budget().ChargeGrowth(out.size(), &charged));
  }
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> Length(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("length", args, {}).status());
  const Trust t = TrustOf(v.untrusted());
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(v.text().view())), t);
    case Value::Kind::kList:
      return Value::Int(static_cast<int64_t>(v.items().size()), t);
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(v.dict().entries.size()), t);
    case Value::Kind::kLoop:
      return Value::Int(static_cast<int64_t>(v.loop().items->items.size()), TrustOf(v.loop().untrusted));
    default:
      return absl::InvalidArgumentError(Cat("object of type '", v.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<Value> List(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("list", args, {}).status());
  if (v.is_list() && !v.is_tuple()) return v;
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  return r.NewList(std::move(items), TrustOf(v.untrusted()));
}

absl::StatusOr<Value> Map(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  std::vector<Value> out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("map", args, {"attribute", "default"}));
    if (!a.Has(0)) return FilterError("map", "map requires a filter name or attribute=");
    const Value& attribute = a.Get(0, Value());
    for (const Value& item : items) {
      QRAG_ASSIGN_OR_RETURN(Value x, SortKey(r, item, attribute, /*case_sensitive=*/true));
      if (x.is_undefined() && a.Has(1)) x = a.Get(1, Value());
      out.push_back(std::move(x));
    }
  } else {
    if (!args.positional[0].is_string()) return FilterError("map", "the filter name must be a string");
    const std::string name(args.positional[0].text().view());
    CallArgs rest;
    rest.positional.assign(args.positional.begin() + 1, args.positional.end());
    rest.keyword = args.keyword;
    for (const Value& item : items) {
      QRAG_ASSIGN_OR_RETURN(Value x, CallFilter(r, name, item, rest));
      out.push_back(std::move(x));
    }
  }
  return r.NewList(std::move(out), TrustOf(v.untrusted()));
}

enum class Extreme : uint8_t { kMin, kMax };

absl::StatusOr<Value> MinMax(Renderer& r, const Value& v, const CallArgs& args, Extreme extreme) {
  const bool max = extreme == Extreme::kMax;
  const std::string_view name = max ? "max" : "min";
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"case_sensitive", "attribute"}));
  const bool case_sensitive = a.Get(0, Value::Bool(false)).Truthy();
  const Value& attribute = a.Get(1, Value::None());
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  QRAG_ASSIGN_OR_RETURN(Value best_key, SortKey(r, items[0], attribute, case_sensitive));
  for (size_t i = 1; i < items.size(); ++i) {
    QRAG_ASSIGN_OR_RETURN(Value key, SortKey(r, items[i], attribute, case_sensitive));
    QRAG_ASSIGN_OR_RETURN(int c, Compare(key, best_key, max ? ">" : "<", r.budget()));
    if ((max && c == 1) || (!max && c == -1)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}
absl::StatusOr<Value> Max(Renderer& r, const Value& v, const CallArgs& args) { return MinMax(r, v, args, Extreme::kMax); }
absl::StatusOr<Value> Min(Renderer& r, const Value& v, const CallArgs& args) { return MinMax(r, v, args, Extreme::kMin); }

// select / reject / selectattr / rejectattr.
struct SelectSpec {
  bool keep_passing;  // select: keep the items that pass the test; reject: those that fail it
  bool by_attribute;  // *attr: test an attribute of the item
};

absl::StatusOr<Value> SelectOrReject(Renderer& r, const Value& v, const CallArgs& args, SelectSpec spec) {
  const bool select = spec.keep_passing;
  const bool by_attr = spec.by_attribute;
  const std::string_view name = by_attr ? (select ? "selectattr" : "rejectattr") : (select ? "select" : "reject");
  size_t next = 0;
  Value attribute;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return FilterError(name, "the first argument must be an attribute name");
    }
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) return FilterError(name, "the test name must be a string");
    test = std::string(args.positional[next++].text().view());
  }
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next), args.positional.end());
  rest.keyword = args.keyword;
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  std::vector<Value> out;
  for (Value& item : items) {
    Value subject = item;
    if (by_attr) {
      QRAG_ASSIGN_OR_RETURN(subject, GetAttrPath(r, item, attribute.text().view()));
    }
    bool passed;
    if (test.empty()) {
      passed = subject.Truthy();
    } else {
      QRAG_ASSIGN_OR_RETURN(passed, CallTest(r, test, subject, rest));
    }
    if (passed == select) out.push_back(std::move(item));
  }
  return r.NewList(std::move(out), TrustOf(v.untrusted()));
}
absl::StatusOr<Value> Select(Renderer& r, const Value& v, const CallArgs& a) { return SelectOrReject(r, v, a, {.keep_passing = true, .by_attribute = false}); }
absl::StatusOr<Value> Reject(Renderer& r, const Value& v, const CallArgs& a) { return SelectOrReject(r, v, a, {.keep_passing = false, .by_attribute = false}); }
absl::StatusOr<Value> SelectAttr(Renderer& r, const Value& v, const CallArgs& a) { return SelectOrReject(r, v, a, {.keep_passing = true, .by_attribute = true}); }
absl::StatusOr<Value> RejectAttr(Renderer& r, const Value& v, const CallArgs& a) { return SelectOrReject(r, v, a, {.keep_passing = false, .by_attribute = true}); }

absl::StatusOr<Value> Replace(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("replace", args, {"old", "new", "count"}));
  if (!a.Has(0) || !a.Has(1)) return FilterError("replace", "needs the old and the new text");
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  QRAG_ASSIGN_OR_RETURN(Text old_text, r.Str(a.Get(0, Value())));
  QRAG_ASSIGN_OR_RETURN(Text new_text, r.Str(a.Get(1, Value())));
  const Value& count = a.Get(2, Value::None());
  if (!count.is_none() && !count.is_int()) return FilterError("replace", "count must be an integer");
  Text out = ReplaceText(s, old_text, new_text, count.is_int() ? count.as_int() : -1);
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> Reverse(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("reverse", args, {}).status());
  if (v.is_string()) {
    const Text& s = v.text();
    const std::vector<size_t> starts = CodePointStarts(s.view());
    Text out;
    for (size_t i = starts.size() - 1; i > 0; --i) out.Append(s, starts[i - 1], starts[i]);
    return r.NewString(std::move(out));
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  std::reverse(items.begin(), items.end());
  return r.NewList(std::move(items), TrustOf(v.untrusted()));
}

absl::StatusOr<Value> Round(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("round", args, {"precision", "method"}));
  const Value& precision_v = a.Get(0, Value::Int(0));
  const Value& method_v = a.Get(1, Value::String("common"));
  if (!precision_v.is_int() && !precision_v.is_bool()) return FilterError("round", "precision must be an integer");
  const int64_t precision = std::clamp<int64_t>(precision_v.as_int(), -400, 400);
  const std::string_view method = method_v.is_string() ? method_v.text().view() : "";
  if (method != "common" && method != "ceil" && method != "floor") {
    return FilterError("round", "method must be common, ceil or floor");
  }
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_number()) {
    return absl::InvalidArgumentError(Cat("type ", v.TypeName(), " doesn't define __round__ method"));
  }
  const Trust t = TrustOf(v.untrusted());
  if (method != "common") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = v.AsDouble() * scale;
    return Value::Float((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale, t);
  }
  if (!v.is_float()) {  // Python's round(int, n) stays an int
    if (precision >= 0) return Value::Int(v.as_int(), t);
    if (precision < -18) return Value::Int(0, t);
    int64_t p = 1;
    for (int64_t i = 0; i < -precision; ++i) p *= 10;
    const int64_t x = v.as_int();
    int64_t q = x / p, rem = x % p;
    if (rem < 0) {
      rem += p;
      q -= 1;
    }
    if (2 * rem > p || (2 * rem == p && (q & 1))) q += 1;  // half to even
    return Value::Int(q * p, t);
  }
  const double x = v.as_float();
  if (!std::isfinite(x)) return Value::Float(x, t);
  if (precision >= 0) {
    // printf rounds the exact binary value half-to-even, as Python's round() does.
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(precision, 300)), x);
    return Value::Float(std::strtod(buf, nullptr), t);
  }
  const double scale = std::pow(10.0, static_cast<double>(-precision));
  return Value::Float(std::nearbyint(x / scale) * scale, t);
}

absl::StatusOr<Value> Safe(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("safe", args, {}).status());
  return AsString(r, v);
}

absl::StatusOr<Value> Sort(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("sort", args, {"reverse", "case_sensitive", "attribute"}));
  const bool reverse = a.Get(0, Value::Bool(false)).Truthy();
  const bool case_sensitive = a.Get(1, Value::Bool(false)).Truthy();
  const Value& attribute = a.Get(2, Value::None());
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  std::vector<Value> keys;
  keys.reserve(items.size());
  for (const Value& item : items) {
    QRAG_ASSIGN_OR_RETURN(Value key, SortKey(r, item, attribute, case_sensitive));
    keys.push_back(std::move(key));
  }
  QRAG_RETURN_IF_ERROR(SortByKeys(r, &items, &keys, reverse));
  return r.NewList(std::move(items), TrustOf(v.untrusted()));
}

absl::StatusOr<Value> String(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("string", args, {}).status());
  return AsString(r, v);
}

absl::StatusOr<Value> Sum(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("sum", args, {"attribute", "start"}));
  const Value& attribute = a.Get(0, Value::None());
  Value total = a.Get(1, Value::Int(0));
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  for (const Value& item : items) {
    QRAG_ASSIGN_OR_RETURN(Value x, SortKey(r, item, attribute, /*case_sensitive=*/true));
    if (!x.is_number() || !total.is_number()) {
      return absl::InvalidArgumentError(Cat("unsupported operand type(s) for +: '", total.TypeName(),
                                                     "' and '", x.TypeName(), "'"));
    }
    const Trust t = TrustOf(total.untrusted() || x.untrusted());
    if (total.is_float() || x.is_float()) {
      total = Value::Float(total.AsDouble() + x.AsDouble(), t);
    } else {
      int64_t s;
      if (__builtin_add_overflow(total.as_int(), x.as_int(), &s)) return absl::InvalidArgumentError("integer overflow");
      total = Value::Int(s, t);
    }
  }
  return total;
}

// jinja2's title: the first letter of every word (after a blank, '-', '(', '{', '[' or '<') upper-cased,
// the rest lower-cased.
absl::StatusOr<Value> Title(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("title", args, {}).status());
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  bool word_start = true;
  Text out = MapCodePointsBy(s, [&](char32_t cp) {
    const bool separator = IsPySpace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    const char32_t mapped = separator ? cp : (word_start ? ToUpper(cp) : ToLower(cp));
    word_start = separator;
    return mapped;
  });
  return r.NewString(std::move(out));
}

absl::StatusOr<Value> ToJsonFilter(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a,
                        BoundArgs::Bind("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonOptions options;
  options.ensure_ascii = a.Get(0, Value::Bool(false)).Truthy();
  const Value& indent = a.Get(1, Value::None());
  if (indent.is_string()) {
    options.indent = std::string(indent.text().view());
  } else if (indent.is_int() || indent.is_bool()) {
    const int64_t n = std::clamp<int64_t>(indent.as_int(), 0, 1024);
    options.indent = std::string(static_cast<size_t>(n), ' ');
  } else if (!indent.is_none()) {
    return FilterError("tojson", "indent must be None, an integer or a string");
  }
  const Value& separators = a.Get(2, Value::None());
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.items().size() != 2 || !separators.items()[0].is_string() ||
        !separators.items()[1].is_string()) {
      return FilterError("tojson", "separators must be a pair of strings");
    }
    options.item_separator = std::string(separators.items()[0].text().view());
    options.key_separator = std::string(separators.items()[1].text().view());
  }
  options.sort_keys = a.Get(3, Value::Bool(false)).Truthy();
  QRAG_ASSIGN_OR_RETURN(Text json, ToJson(v, options, r.budget()));
  return r.NewString(std::move(json));
}

absl::StatusOr<Value> Trim(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("trim", args, {"chars"}));
  QRAG_ASSIGN_OR_RETURN(Value s, AsString(r, v));
  const Value& chars = a.Get(0, Value::None());
  if (!chars.is_none() && !chars.is_string()) return FilterError("trim", "chars must be None or a string");
  return Value::String(StripText(s.text(), chars.is_string() ? &chars.text() : nullptr, StripSides::kBoth));
}

absl::StatusOr<Value> Unique(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("unique", args, {"case_sensitive", "attribute"}));
  const bool case_sensitive = a.Get(0, Value::Bool(false)).Truthy();
  const Value& attribute = a.Get(1, Value::None());
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(v));
  absl::flat_hash_set<KeyCode> seen;
  std::vector<Value> out;
  for (Value& item : items) {
    QRAG_ASSIGN_OR_RETURN(Value key, SortKey(r, item, attribute, case_sensitive));
    QRAG_ASSIGN_OR_RETURN(KeyCode code, HashKey(key));
    if (seen.insert(std::move(code)).second) out.push_back(std::move(item));
  }
  return r.NewList(std::move(out), TrustOf(v.untrusted()));
}

absl::StatusOr<Value> WordCount(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind("wordcount", args, {}).status());
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  const std::string_view b = s.view();
  int64_t words = 0;
  bool in_word = false;
  for (size_t pos = 0; pos < b.size();) {
    char32_t cp;
    pos += DecodeUtf8(b, pos, &cp);
    const bool word_char = IsAlpha(cp) || IsDigit(cp) || cp == '_';
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words, TrustOf(s.AnyUntrusted()));
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"abs", Abs},           {"attr", Attr},         {"capitalize", Capitalize}, {"count", Length},
    {"d", Default},         {"default", Default},   {"dictsort", DictSort},     {"e", Escape},
    {"escape", Escape},     {"first", First},       {"float", Float},           {"forceescape", Escape},
    {"format", Format},     {"indent", Indent},     {"int", Int},               {"items", Items},
    {"join", Join},         {"last", Last},         {"length", Length},         {"list", List},
    {"lower", Lower},       {"map", Map},           {"max", Max},               {"min", Min},
    {"reject", Reject},     {"rejectattr", RejectAttr}, {"replace", Replace},   {"reverse", Reverse},
    {"round", Round},       {"safe", Safe},         {"select", Select},         {"selectattr", SelectAttr},
    {"sort", Sort},         {"string", String},     {"sum", Sum},               {"title", Title},
    {"tojson", ToJsonFilter}, {"trim", Trim},       {"unique", Unique},         {"upper", Upper},
    {"wordcount", WordCount},
};

FilterFn FindFilter(std::string_view name) {
  for (const FilterEntry& f : kFilters) {
    if (f.name == name) return f.fn;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<Value> GetAttrPath(Renderer& r, const Value& obj, std::string_view path) {
  Value current = obj;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string_view part = path.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    int64_t index = 0;
    if (digits && part.size() <= 18) {
      for (char c : part) index = index * 10 + (c - '0');
      QRAG_ASSIGN_OR_RETURN(current, r.GetItem(current, Value::Int(index)));
    } else {
      QRAG_ASSIGN_OR_RETURN(current, r.GetItem(current, Value::String(std::string(part))));
    }
    if (dot == std::string_view::npos) return current;
    pos = dot + 1;
  }
}

bool HasFilter(std::string_view name) { return FindFilter(name) != nullptr; }

absl::StatusOr<Value> CallFilter(Renderer& r, std::string_view name, const Value& input, const CallArgs& args) {
  const FilterFn fn = FindFilter(name);
  if (fn == nullptr) return absl::InvalidArgumentError(Cat("no filter named '", name, "'"));
  QRAG_RETURN_IF_ERROR(r.budget().ChargeScan(input.is_string() ? input.text().size() : 0));
  return fn(r, input, args);
}

}  // namespace qrag::jinja
