// Tests (`value is name(args)`), with jinja2 3.1's semantics.
#include <cmath>
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

using TestFn = absl::StatusOr<bool> (*)(Renderer&, const Value&, const CallArgs&);

absl::StatusOr<const Value*> OneArg(std::string_view test, const CallArgs& args) {
  if (args.positional.size() != 1 || !args.keyword.empty()) {
    return absl::InvalidArgumentError(Cat("test '", test, "' takes exactly one argument"));
  }
  return &args.positional[0];
}

absl::Status NoArgs(std::string_view test, const CallArgs& args) {
  if (!args.positional.empty() || !args.keyword.empty()) {
    return absl::InvalidArgumentError(Cat("test '", test, "' takes no arguments"));
  }
  return absl::OkStatus();
}

#define QRAG_JINJA_KIND_TEST(Name, test_name, expr)                          \
  absl::StatusOr<bool> Name(Renderer&, const Value& v, const CallArgs& args) { \
    QRAG_RETURN_IF_ERROR(NoArgs(test_name, args));                           \
    return (expr);                                                           \
  }

QRAG_JINJA_KIND_TEST(Defined, "defined", !v.is_undefined())
QRAG_JINJA_KIND_TEST(Undefined, "undefined", v.is_undefined())
QRAG_JINJA_KIND_TEST(None, "none", v.is_none())
QRAG_JINJA_KIND_TEST(Boolean, "boolean", v.is_bool())
QRAG_JINJA_KIND_TEST(False, "false", v.is_bool() && !v.as_bool())
QRAG_JINJA_KIND_TEST(True, "true", v.is_bool() && v.as_bool())
QRAG_JINJA_KIND_TEST(Integer, "integer", v.is_int())
QRAG_JINJA_KIND_TEST(Float, "float", v.is_float())
QRAG_JINJA_KIND_TEST(Number, "number", v.is_number())
QRAG_JINJA_KIND_TEST(String, "string", v.is_string())
QRAG_JINJA_KIND_TEST(Mapping, "mapping", v.is_dict())
QRAG_JINJA_KIND_TEST(Callable, "callable", v.is_callable())
// iter() works on str, list, tuple, dict, Undefined, Namespace and the loop object.
QRAG_JINJA_KIND_TEST(Iterable, "iterable",
                     v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() || v.is_namespace() ||
                         v.is_loop())
// len() and [] work on str, list, tuple, dict and Undefined (whose [] raises, but exists).
QRAG_JINJA_KIND_TEST(Sequence, "sequence", v.is_string() || v.is_list() || v.is_dict() || v.is_undefined())

#undef QRAG_JINJA_KIND_TEST

// Nothing is markup here (autoescaping is off, as in transformers).
absl::StatusOr<bool> Escaped(Renderer&, const Value&, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(NoArgs("escaped", args));
  return false;
}

absl::StatusOr<int64_t> Remainder(const Value& v, const Value& d, std::string_view test) {
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_number() || !d.is_number()) {
    return absl::InvalidArgumentError(Cat("test '", test, "' needs numbers, not ", v.TypeName()));
  }
  if (d.AsDouble() == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
  if (v.is_float() || d.is_float()) return std::fmod(v.AsDouble(), d.AsDouble()) == 0 ? 0 : 1;
  if (d.as_int() == -1) return 0;
  return v.as_int() % d.as_int();
}

absl::StatusOr<bool> Odd(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(NoArgs("odd", args));
  QRAG_ASSIGN_OR_RETURN(int64_t rem, Remainder(v, Value::Int(2), "odd"));
  return rem != 0;
}

absl::StatusOr<bool> Even(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(NoArgs("even", args));
  QRAG_ASSIGN_OR_RETURN(int64_t rem, Remainder(v, Value::Int(2), "even"));
  return rem == 0;
}

absl::StatusOr<bool> DivisibleBy(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* d, OneArg("divisibleby", args));
  QRAG_ASSIGN_OR_RETURN(int64_t rem, Remainder(v, *d, "divisibleby"));
  return rem == 0;
}

absl::StatusOr<bool> Eq(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* other, OneArg("eq", args));
  return Equals(v, *other, r.budget());
}

absl::StatusOr<bool> Ne(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* other, OneArg("ne", args));
  QRAG_ASSIGN_OR_RETURN(bool eq, Equals(v, *other, r.budget()));
  return !eq;
}

template <int kLess, int kEqual, int kGreater>
absl::StatusOr<bool> Order(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* other, OneArg("comparison", args));
  QRAG_ASSIGN_OR_RETURN(int c, Compare(v, *other, "<", r.budget()));
  if (c == 2) return false;
  return c < 0 ? kLess != 0 : (c == 0 ? kEqual != 0 : kGreater != 0);
}

absl::StatusOr<bool> In(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* seq, OneArg("in", args));
  return Contains(*seq, v, r.budget());
}

absl::StatusOr<bool> SameAs(Renderer& r, const Value& v, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(const Value* other, OneArg("sameas", args));
  if (v.kind() != other->kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return v.as_int() == other->as_int();
    case Value::Kind::kFloat:
      return v.as_float() == other->as_float();
    case Value::Kind::kString:
      return &v.text() == &other->text();
    case Value::Kind::kList:
      return &v.items() == &other->items();
    case Value::Kind::kDict:
      return &v.dict() == &other->dict();
    default:
      return Equals(v, *other, r.budget());
  }
}

enum class Case : uint8_t { kLower, kUpper };

absl::StatusOr<bool> CaseTest(Renderer& r, const Value& v, const CallArgs& args, Case which) {
  const bool lower = which == Case::kLower;
  QRAG_RETURN_IF_ERROR(NoArgs(lower ? "lower" : "upper", args));
  QRAG_ASSIGN_OR_RETURN(Text s, r.Str(v));
  QRAG_ASSIGN_OR_RETURN(Value result, CallMethod(r, Value::String(std::move(s)), lower ? "islower" : "isupper", {}));
  return result.as_bool();
}
absl::StatusOr<bool> Lower(Renderer& r, const Value& v, const CallArgs& args) { return CaseTest(r, v, args, Case::kLower); }
absl::StatusOr<bool> Upper(Renderer& r, const Value& v, const CallArgs& args) { return CaseTest(r, v, args, Case::kUpper); }

absl::StatusOr<bool> FilterExists(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(NoArgs("filter", args));
  return v.is_string() && HasFilter(v.text().view());
}

absl::StatusOr<bool> TestExists(Renderer&, const Value& v, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(NoArgs("test", args));
  return v.is_string() && HasTest(v.text().view());
}

struct TestEntry {
  std::string_view name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"!=", Ne},
    {"<", Order<1, 0, 0>},
    {"<=", Order<1, 1, 0>},
    {"==", Eq},
    {">", Order<0, 0, 1>},
    {">=", Order<0, 1, 1>},
    {"boolean", Boolean},
    {"callable", Callable},
    {"defined", Defined},
    {"divisibleby", DivisibleBy},
    {"eq", Eq},
    {"equalto", Eq},
    {"escaped", Escaped},
    {"even", Even},
    {"false", False},
    {"filter", FilterExists},
    {"float", Float},
    {"ge", Order<0, 1, 1>},
    {"greaterthan", Order<0, 0, 1>},
    {"gt", Order<0, 0, 1>},
    {"in", In},
    {"integer", Integer},
    {"iterable", Iterable},
    {"le", Order<1, 1, 0>},
    {"lessthan", Order<1, 0, 0>},
    {"lower", Lower},
    {"lt", Order<1, 0, 0>},
    {"mapping", Mapping},
    {"ne", Ne},
    {"none", None},
    {"number", Number},
    {"odd", Odd},
    {"sameas", SameAs},
    {"sequence", Sequence},
    {"string", String},
    {"test", TestExists},
    {"true", True},
    {"undefined", Undefined},
    {"upper", Upper},
};

TestFn FindTest(std::string_view name) {
  for (const TestEntry& t : kTests) {
    if (t.name == name) return t.fn;
  }
  return nullptr;
}

}  // namespace

bool HasTest(std::string_view name) { return FindTest(name) != nullptr; }

absl::StatusOr<bool> CallTest(Renderer& r, std::string_view name, const Value& input, const CallArgs& args) {
  const TestFn fn = FindTest(name);
  if (fn == nullptr) return absl::InvalidArgumentError(Cat("no test named '", name, "'"));
  QRAG_RETURN_IF_ERROR(r.budget().Charge(1));
  return fn(r, input, args);
}

}  // namespace qrag::jinja
