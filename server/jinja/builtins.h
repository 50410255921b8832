// The builtins of the engine: filters, tests, methods of str/dict/list/loop objects, and the global
// functions (range, namespace, dict, raise_exception, strftime_now). Internal to qrag_jinja.
#ifndef QRAG_SERVER_JINJA_BUILTINS_H_
#define QRAG_SERVER_JINJA_BUILTINS_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/jinja/unicode.h"
#include "server/jinja/value.h"

namespace qrag::jinja {

class Renderer;

// The arguments of a call: positional, then keyword.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Python-style binding of CallArgs to named parameters.
class BoundArgs {
 public:
  // INVALID_ARGUMENT for too many positional arguments, an unknown keyword, or a parameter given twice.
  static absl::StatusOr<BoundArgs> Bind(std::string_view function, const CallArgs& args,
                                        std::initializer_list<std::string_view> params);
  bool Has(size_t i) const { return slots_[i] != nullptr && !slots_[i]->is_undefined(); }
  // The argument, or `fallback` when it was not given (or is undefined).
  Value Get(size_t i, Value fallback) const { return Has(i) ? *slots_[i] : std::move(fallback); }
  // The argument itself (it must be given): refers into the CallArgs that were bound.
  const Value& Ref(size_t i) const { return *slots_[i]; }

 private:
  std::vector<const Value*> slots_;
};

// Filters: `input | name(args)`. INVALID_ARGUMENT "no filter named 'x'" for unknown names.
absl::StatusOr<Value> CallFilter(Renderer& r, std::string_view name, const Value& input, const CallArgs& args);
// Tests: `input is name(args)`. INVALID_ARGUMENT "no test named 'x'" for unknown names.
absl::StatusOr<bool> CallTest(Renderer& r, std::string_view name, const Value& input, const CallArgs& args);
bool HasFilter(std::string_view name);
bool HasTest(std::string_view name);

// Methods the receiver's type has (str.strip, dict.items, loop.cycle, ...).
bool HasMethod(const Value& receiver, std::string_view name);
// Methods jinja2's immutable sandbox refuses (list.append, dict.update, ...): attribute access gives an
// undefined value.
bool IsUnsafeMethod(const Value& receiver, std::string_view name);
absl::StatusOr<Value> CallMethod(Renderer& r, const Value& receiver, std::string_view name, const CallArgs& args);

// Global functions. strftime_now exists only when the render options carry a clock.
bool IsGlobalFunction(const Renderer& r, std::string_view name);
absl::StatusOr<Value> CallGlobal(Renderer& r, std::string_view name, const CallArgs& args);

// printf-style `format % args` (Python's str % operator): args is a tuple, a dict (for %(name)s) or one
// value.
absl::StatusOr<Value> PercentFormat(Renderer& r, const Value& format, const Value& args);

// `obj.a.b.0` as jinja2's attribute getters (map, selectattr, sort, ...) resolve it: each dot-separated
// part is an item lookup (integer parts index lists), falling back to the attribute.
absl::StatusOr<Value> GetAttrPath(Renderer& r, const Value& obj, std::string_view path);

// `s` with every code point replaced by map(cp); each new code point has the taint of the one it
// replaces. Invalid bytes are kept as they are. `map` may keep state (title case, capitalize).
template <typename F>
Text MapCodePointsBy(const Text& s, F&& map) {
  Text out;
  out.Reserve(s.size());
  const std::string_view v = s.view();
  std::string piece;
  for (size_t pos = 0; pos < v.size();) {
    char32_t cp;
    const size_t len = DecodeUtf8(v, pos, &cp);
    piece.clear();
    if (cp == 0xFFFD && len == 1) {
      piece.push_back(v[pos]);
    } else {
      AppendUtf8(map(cp), &piece);
    }
    out.AppendMarked(piece, s.AnyUntrustedIn(pos, pos + len));
    pos += len;
  }
  return out;
}
inline Text MapCodePoints(const Text& s, char32_t (*f)(char32_t)) { return MapCodePointsBy(s, f); }

// Python's str.strip/lstrip/rstrip (whitespace, or any code point of `chars`), keeping taint.
enum class StripSides : uint8_t { kLeft, kRight, kBoth };
Text StripText(const Text& s, const Text* chars, StripSides sides);

// Python's str.replace (count < 0: all). A replacement is untrusted when the new text is or when the text it
// replaces was.
Text ReplaceText(const Text& s, const Text& old_text, const Text& new_text, int64_t count);

// Python's str.format with positional and keyword fields ({}, {0}, {name}, {{ }}, !r/!s, and the format
// spec mini-language's fill, align, sign, width and precision).
absl::StatusOr<Value> StrFormat(Renderer& r, const Value& format, const CallArgs& args);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_BUILTINS_H_
