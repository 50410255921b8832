// Methods of str, dict, list and loop objects (`content.strip()`, `d.items()`, `loop.cycle(...)`), and
// the argument binding shared by all builtins.
#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/jinja/absl_compat.h"
#include "server/common/status.h"
#include "server/jinja/builtins.h"
#include "server/jinja/compare.h"
#include "server/jinja/renderer.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

Trust TrustOf(bool untrusted) { return untrusted ? Trust::kUntrusted : Trust::kTrusted; }

constexpr std::string_view kStrMethods[] = {
    "strip",   "lstrip",  "rstrip",  "split",   "rsplit",  "splitlines", "startswith", "endswith", "upper",
    "lower",   "title",   "capitalize", "swapcase", "replace", "find",    "rfind",      "count",    "join",
    "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",  "format"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};
constexpr std::string_view kListMethods[] = {"count", "index"};
constexpr std::string_view kUnsafeListMethods[] = {"append", "clear", "pop", "reverse", "insert", "sort", "extend",
                                                   "remove"};
constexpr std::string_view kUnsafeDictMethods[] = {"clear", "pop", "popitem", "setdefault", "update"};

template <size_t N>
bool In(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

absl::Status ArgError(std::string_view method, std::string_view message) {
  return absl::InvalidArgumentError(Cat(method, "(): ", message));
}

// The string argument `i`, or nullptr when absent/None; error for other types.
absl::StatusOr<const Text*> OptionalStr(const BoundArgs& a, size_t i, std::string_view method) {
  if (!a.Has(i)) return nullptr;
  const Value v = a.Get(i, Value::None());
  if (v.is_none()) return nullptr;
  if (!v.is_string()) return ArgError(method, Cat("argument must be None or str, not ", v.TypeName()));
  return &a.Ref(i).text();
}

absl::StatusOr<int64_t> OptionalInt(const BoundArgs& a, size_t i, int64_t fallback, std::string_view method) {
  const Value v = a.Get(i, Value::None());
  if (v.is_none()) return fallback;
  if (!v.is_int() && !v.is_bool()) return ArgError(method, Cat("an integer is required, not ", v.TypeName()));
  return v.as_int();
}

// [begin, end) byte ranges of the pieces of `s` split at whitespace runs (Python's str.split()).
std::vector<std::pair<size_t, size_t>> SplitWhitespace(std::string_view s, int64_t maxsplit, bool from_right) {
  std::vector<std::pair<size_t, size_t>> pieces;
  const std::vector<size_t> starts = CodePointStarts(s);
  const size_t n = starts.size() - 1;
  auto is_space = [&](size_t k) {
    char32_t cp;
    DecodeUtf8(s, starts[k], &cp);
    return IsPySpace(cp);
  };
  if (!from_right) {
    size_t k = 0;
    while (k < n) {
      while (k < n && is_space(k)) ++k;
      if (k == n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(pieces.size()) == maxsplit) {
        size_t e = n;
        while (e > k && is_space(e - 1)) --e;
        pieces.emplace_back(starts[k], starts[e]);
        break;
      }
      const size_t b = k;
      while (k < n && !is_space(k)) ++k;
      pieces.emplace_back(starts[b], starts[k]);
    }
    return pieces;
  }
  size_t k = n;
  while (k > 0) {
    while (k > 0 && is_space(k - 1)) --k;
    if (k == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(pieces.size()) == maxsplit) {
      size_t b = 0;
      while (b < k && is_space(b)) ++b;
      pieces.emplace_back(starts[b], starts[k]);
      break;
    }
    const size_t e = k;
    while (k > 0 && !is_space(k - 1)) --k;
    pieces.emplace_back(starts[k], starts[e]);
  }
  std::reverse(pieces.begin(), pieces.end());
  return pieces;
}

std::vector<std::pair<size_t, size_t>> SplitSeparator(std::string_view s, std::string_view sep, int64_t maxsplit,
                                                      bool from_right) {
  std::vector<std::pair<size_t, size_t>> pieces;
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(pieces.size()) < maxsplit) {
      const size_t hit = s.find(sep, pos);
      if (hit == std::string_view::npos) break;
      pieces.emplace_back(pos, hit);
      pos = hit + sep.size();
    }
    pieces.emplace_back(pos, s.size());
    return pieces;
  }
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(pieces.size()) < maxsplit) {
    if (end < sep.size()) break;
    const size_t hit = s.rfind(sep, end - sep.size());
    if (hit == std::string_view::npos) break;
    pieces.emplace_back(hit + sep.size(), end);
    end = hit;
  }
  pieces.emplace_back(0, end);
  std::reverse(pieces.begin(), pieces.end());
  return pieces;
}

enum class SplitFrom : uint8_t { kLeft, kRight };  // split / rsplit

absl::StatusOr<Value> Split(Renderer& r, const Value& self, const CallArgs& args, SplitFrom from) {
  const bool from_right = from == SplitFrom::kRight;
  const std::string_view name = from_right ? "rsplit" : "split";
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"sep", "maxsplit"}));
  QRAG_ASSIGN_OR_RETURN(const Text* sep, OptionalStr(a, 0, name));
  QRAG_ASSIGN_OR_RETURN(int64_t maxsplit, OptionalInt(a, 1, -1, name));
  const Text& s = self.text();
  std::vector<std::pair<size_t, size_t>> ranges;
  if (sep == nullptr) {
    ranges = SplitWhitespace(s.view(), maxsplit, from_right);
  } else {
    if (sep->empty()) return ArgError(name, "empty separator");
    ranges = SplitSeparator(s.view(), sep->view(), maxsplit, from_right);
  }
  QRAG_RETURN_IF_ERROR(r.CheckItems(ranges.size()));
  std::vector<Value> parts;
  parts.reserve(ranges.size());
  for (const auto& [b, e] : ranges) parts.push_back(Value::String(s.Slice(b, e)));
  return r.NewList(std::move(parts), TrustOf(s.AnyUntrusted()));
}

absl::StatusOr<Value> SplitLinesMethod(Renderer& r, const Value& self, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("splitlines", args, {"keepends"}));
  const bool keepends = a.Get(0, Value::Bool(false)).Truthy();
  const Text& s = self.text();
  const std::vector<LineRange> ranges = PySplitLines(s.view());
  QRAG_RETURN_IF_ERROR(r.CheckItems(ranges.size()));
  std::vector<Value> lines;
  lines.reserve(ranges.size());
  for (const LineRange& line : ranges) lines.push_back(Value::String(s.Slice(line.begin, keepends ? line.break_end : line.end)));
  return r.NewList(std::move(lines), TrustOf(s.AnyUntrusted()));
}

// startswith / endswith with a str or a tuple of str.
enum class AffixKind : uint8_t { kPrefix, kSuffix };  // startswith / endswith

absl::StatusOr<Value> Affix(const Value& self, const CallArgs& args, AffixKind kind) {
  const bool prefix = kind == AffixKind::kPrefix;
  const std::string_view name = prefix ? "startswith" : "endswith";
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"affix"}));
  if (!a.Has(0)) return ArgError(name, "takes at least 1 argument");
  const Value& arg = a.Get(0, Value());
  std::vector<const Value*> candidates;
  if (arg.is_list() && arg.is_tuple()) {
    for (const Value& v : arg.items()) candidates.push_back(&v);
  } else {
    candidates.push_back(&arg);
  }
  const std::string_view s = self.text().view();
  for (const Value* c : candidates) {
    if (!c->is_string()) {
      return ArgError(name, Cat("first arg must be str or a tuple of str, not ", c->TypeName()));
    }
    const std::string_view x = c->text().view();
    if (prefix ? s.substr(0, x.size()) == x : (s.size() >= x.size() && s.substr(s.size() - x.size()) == x)) {
      return Value::Bool(true);
    }
  }
  return Value::Bool(false);
}

absl::StatusOr<Value> Replace(Renderer& r, const Value& self, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("replace", args, {"old", "new", "count"}));
  const Value& old_v = a.Get(0, Value());
  const Value& new_v = a.Get(1, Value());
  if (!old_v.is_string() || !new_v.is_string()) return ArgError("replace", "arguments must be str");
  QRAG_ASSIGN_OR_RETURN(int64_t count, OptionalInt(a, 2, -1, "replace"));
  return r.NewString(ReplaceText(self.text(), old_v.text(), new_v.text(), count));
}

absl::StatusOr<Value> Find(const Value& self, const CallArgs& args, std::string_view name) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"sub"}));
  const Value& sub = a.Get(0, Value());
  if (!sub.is_string()) return ArgError(name, "must be str");
  const std::string_view s = self.text().view();
  const std::string_view x = sub.text().view();
  const Trust t = TrustOf(self.untrusted() || sub.untrusted());
  if (name == "count") {
    int64_t n = 0;
    if (x.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(s)) + 1, t);
    for (size_t pos = s.find(x); pos != std::string_view::npos; pos = s.find(x, pos + x.size())) ++n;
    return Value::Int(n, t);
  }
  const size_t hit = name == "find" ? s.find(x) : s.rfind(x);
  if (hit == std::string_view::npos) return Value::Int(-1, t);
  return Value::Int(static_cast<int64_t>(CodePointCount(s.substr(0, hit))), t);
}

absl::StatusOr<Value> Join(Renderer& r, const Value& self, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("join", args, {"iterable"}));
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, r.Iterate(a.Get(0, Value())));
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      return ArgError("join", Cat("sequence item ", i, ": expected str instance, ", items[i].TypeName(),
                                           " found"));
    }
    if (i > 0) out.Append(self.text());
    out.Append(items[i].text());
    QRAG_RETURN_IF_ERROR(r.budget().ChargeGrowth(out.size(), &charged));
  }
  return r.NewString(std::move(out));
}

// isdigit, isalpha, ...: false for the empty string, as in Python.
absl::StatusOr<Value> Predicate(const Value& self, std::string_view name) {
  const std::string_view s = self.text().view();
  if (s.empty()) return Value::Bool(false);
  bool any_cased = false, all = true;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    if (name == "isdigit") {
      all = all && IsDigit(cp);
    } else if (name == "isalpha") {
      all = all && IsAlpha(cp);
    } else if (name == "isalnum") {
      all = all && (IsAlpha(cp) || IsDigit(cp));
    } else if (name == "isspace") {
      all = all && IsPySpace(cp);
    } else if (name == "islower") {
      if (ToLower(cp) != cp) all = false;
      if (IsCased(cp)) any_cased = true;
    } else {  // isupper
      if (ToUpper(cp) != cp) all = false;
      if (IsCased(cp)) any_cased = true;
    }
  }
  if (name == "islower" || name == "isupper") return Value::Bool(all && any_cased);
  return Value::Bool(all);
}

char32_t SwapCase(char32_t cp) {
  const char32_t up = ToUpper(cp);
  return up != cp ? up : ToLower(cp);
}

// Python's str.title(): a cased character after an uncased one is upper-cased, the others lower-cased.
Text TitleCase(const Text& s) {
  bool prev_cased = false;
  return MapCodePointsBy(s, [&](char32_t cp) {
    const char32_t mapped = prev_cased ? ToLower(cp) : ToUpper(cp);
    prev_cased = IsCased(cp);
    return mapped;
  });
}

// Python's str.capitalize(): the first character upper-cased, the rest lower-cased.
Text Capitalize(const Text& s) {
  bool first = true;
  return MapCodePointsBy(s, [&](char32_t cp) {
    const char32_t mapped = first ? ToUpper(cp) : ToLower(cp);
    first = false;
    return mapped;
  });
}

absl::StatusOr<Value> StrMethod(Renderer& r, const Value& self, std::string_view name, const CallArgs& args) {
  const Text& s = self.text();
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"chars"}));
    QRAG_ASSIGN_OR_RETURN(const Text* chars, OptionalStr(a, 0, name));
    const StripSides sides = name == "lstrip" ? StripSides::kLeft : (name == "rstrip" ? StripSides::kRight : StripSides::kBoth);
    return Value::String(StripText(s, chars, sides));
  }
  if (name == "split" || name == "rsplit") {
    return Split(r, self, args, name == "rsplit" ? SplitFrom::kRight : SplitFrom::kLeft);
  }
  if (name == "splitlines") return SplitLinesMethod(r, self, args);
  if (name == "startswith" || name == "endswith") {
    return Affix(self, args, name == "startswith" ? AffixKind::kPrefix : AffixKind::kSuffix);
  }
  if (name == "upper" || name == "lower" || name == "swapcase" || name == "title" || name == "capitalize") {
    QRAG_RETURN_IF_ERROR(BoundArgs::Bind(name, args, {}).status());
    QRAG_RETURN_IF_ERROR(r.budget().ChargeBytes(s.size()));
    if (name == "upper") return Value::String(MapCodePoints(s, ToUpper));
    if (name == "lower") return Value::String(MapCodePoints(s, ToLower));
    if (name == "swapcase") return Value::String(MapCodePoints(s, SwapCase));
    if (name == "title") return Value::String(TitleCase(s));
    return Value::String(Capitalize(s));
  }
  if (name == "replace") return Replace(r, self, args);
  if (name == "find" || name == "rfind" || name == "count") return Find(self, args, name);
  if (name == "join") return Join(r, self, args);
  if (name == "format") return StrFormat(r, self, args);
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind(name, args, {}).status());
  return Predicate(self, name);
}

absl::StatusOr<Value> DictMethod(Renderer& r, const Value& self, std::string_view name, const CallArgs& args) {
  const Trust t = TrustOf(self.untrusted());
  const auto& entries = self.dict().entries;
  if (name == "get") {
    QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("get", args, {"key", "default"}));
    const Value& key = a.Get(0, Value());
    QRAG_RETURN_IF_ERROR(HashKey(key).status());
    if (const Value* v = self.dict().Find(key)) return *v;
    return a.Get(1, Value::None());
  }
  QRAG_RETURN_IF_ERROR(BoundArgs::Bind(name, args, {}).status());
  std::vector<Value> out;
  out.reserve(entries.size());
  for (const auto& [key, value] : entries) {
    if (name == "keys") {
      out.push_back(key);
    } else if (name == "values") {
      out.push_back(value);
    } else {
      QRAG_ASSIGN_OR_RETURN(Value pair, r.NewTuple({key, value}, t));
      out.push_back(std::move(pair));
    }
  }
  return r.NewList(std::move(out), t);
}

absl::StatusOr<Value> ListMethod(Renderer& r, const Value& self, std::string_view name, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(name, args, {"value"}));
  const Value& needle = a.Get(0, Value());
  int64_t count = 0;
  const auto& items = self.items();
  for (size_t i = 0; i < items.size(); ++i) {
    QRAG_ASSIGN_OR_RETURN(bool eq, Equals(items[i], needle, r.budget()));
    if (!eq) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i), TrustOf(self.untrusted()));
    ++count;
  }
  if (name == "index") return absl::InvalidArgumentError("list.index(x): x not in list");
  return Value::Int(count, TrustOf(self.untrusted()));
}

absl::StatusOr<Value> LoopMethod(const Value& self, std::string_view name, const CallArgs& args) {
  if (!args.keyword.empty()) return ArgError(name, "takes no keyword arguments");
  // cycle(*values): the value for this iteration, round robin.
  if (args.positional.empty()) return ArgError("cycle", "no items for cycling given");
  return args.positional[self.loop().index0 % args.positional.size()];
}

}  // namespace

absl::StatusOr<BoundArgs> BoundArgs::Bind(std::string_view function, const CallArgs& args,
                                          std::initializer_list<std::string_view> params) {
  BoundArgs bound;
  bound.slots_.assign(params.size(), nullptr);
  if (args.positional.size() > params.size()) {
    return absl::InvalidArgumentError(Cat(function, "() takes at most ", params.size(),
                                                   " argument(s) (", args.positional.size(), " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound.slots_[i] = &args.positional[i];
  for (const auto& [name, value] : args.keyword) {
    auto it = std::find(params.begin(), params.end(), name);
    if (it == params.end()) {
      return absl::InvalidArgumentError(
          Cat(function, "() got an unexpected keyword argument '", name, "'"));
    }
    const size_t i = static_cast<size_t>(it - params.begin());
    if (bound.slots_[i] != nullptr) {
      return absl::InvalidArgumentError(Cat(function, "() got multiple values for argument '", name, "'"));
    }
    bound.slots_[i] = &value;
  }
  return bound;
}

Text StripText(const Text& s, const Text* chars, StripSides sides) {
  const bool left = sides != StripSides::kRight;
  const bool right = sides != StripSides::kLeft;
  const std::string_view v = s.view();
  std::vector<char32_t> set;
  if (chars != nullptr) {
    const std::string_view c = chars->view();
    for (size_t pos = 0; pos < c.size();) {
      char32_t cp;
      pos += DecodeUtf8(c, pos, &cp);
      set.push_back(cp);
    }
  }
  auto strip = [&](char32_t cp) {
    return chars == nullptr ? IsPySpace(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t b = 0, e = v.size();
  char32_t cp;
  while (left && b < e) {
    const size_t len = DecodeUtf8(v, b, &cp);
    if (!strip(cp) || (cp == 0xFFFD && len == 1)) break;
    b += len;
  }
  while (right && e > b) {
    const size_t start = std::max(PrevCodePointStart(v, e), b);
    DecodeUtf8(v, start, &cp);
    if (!strip(cp) || (cp == 0xFFFD && e - start == 1)) break;
    e = start;
  }
  return s.Slice(b, e);
}

Text ReplaceText(const Text& s, const Text& old_text, const Text& new_text, int64_t count) {
  const std::string_view v = s.view();
  const std::string_view old = old_text.view();
  Text out;
  // A replacement is untrusted when the replacing text is, or when the text it replaces was (an attacker
  // chose where it goes).
  auto append_new = [&](size_t b, size_t e) {
    const size_t at = out.size();
    out.Append(new_text);
    if (s.AnyUntrustedIn(b, e) || (b == e && (s.IsUntrusted(b > 0 ? b - 1 : b) || s.IsUntrusted(b)))) {
      out.MarkUntrusted(at, out.size());
    }
  };
  int64_t done = 0;
  if (old.empty()) {  // Python inserts `new` before every character and at the end
    const std::vector<size_t> starts = CodePointStarts(v);
    for (size_t i = 0; i + 1 < starts.size(); ++i) {
      if (count < 0 || done < count) {
        append_new(starts[i], starts[i]);
        ++done;
      }
      out.Append(s, starts[i], starts[i + 1]);
    }
    if (count < 0 || done < count) append_new(v.size(), v.size());
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    const size_t hit = v.find(old, pos);
    if (hit == std::string_view::npos) break;
    out.Append(s, pos, hit);
    append_new(hit, hit + old.size());
    pos = hit + old.size();
    ++done;
  }
  out.Append(s, pos, v.size());
  return out;
}

bool HasMethod(const Value& receiver, std::string_view name) {
  switch (receiver.kind()) {
    case Value::Kind::kString:
      return In(kStrMethods, name);
    case Value::Kind::kDict:
      return In(kDictMethods, name);
    case Value::Kind::kList:
      return In(kListMethods, name);
    case Value::Kind::kLoop:
      return name == "cycle";
    default:
      return false;
  }
}

bool IsUnsafeMethod(const Value& receiver, std::string_view name) {
  if (receiver.is_list()) return !receiver.is_tuple() && In(kUnsafeListMethods, name);
  if (receiver.is_dict()) return In(kUnsafeDictMethods, name);
  return false;
}

absl::StatusOr<Value> CallMethod(Renderer& r, const Value& receiver, std::string_view name, const CallArgs& args) {
  // String methods scan their receiver: charge for it, so a loop over a long string stays bounded.
  QRAG_RETURN_IF_ERROR(r.budget().ChargeScan(receiver.is_string() ? receiver.text().size() : 0));
  switch (receiver.kind()) {
    case Value::Kind::kString:
      return StrMethod(r, receiver, name, args);
    case Value::Kind::kDict:
      return DictMethod(r, receiver, name, args);
    case Value::Kind::kList:
      return ListMethod(r, receiver, name, args);
    case Value::Kind::kLoop:
      return LoopMethod(receiver, name, args);
    default:
      return absl::InvalidArgumentError(
          Cat("'", receiver.TypeName(), "' object has no method '", name, "'"));
  }
}

}  // namespace qrag::jinja
