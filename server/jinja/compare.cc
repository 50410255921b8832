#include "server/jinja/compare.h"

#include <cmath>
#include <string>

#include "server/jinja/absl_compat.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::jinja {
namespace {

// Exact comparison of an int with a double (Python compares them exactly, not through a rounding).
int CompareIntDouble(int64_t i, double d) {
  if (std::isnan(d)) return 2;  // unordered
  if (d >= 9.3e18) return -1;
  if (d <= -9.3e18) return 1;
  const double fl = std::floor(d);
  const auto fi = static_cast<int64_t>(fl);
  if (i < fi) return -1;
  if (i > fi) return 1;
  return fl == d ? 0 : -1;  // i == floor(d) < d
}

// Numeric three-way comparison; 2 means unordered (NaN).
int CompareNumbers(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
  if (a.is_float() && b.is_float()) {
    const double x = a.as_float(), y = b.as_float();
    if (std::isnan(x) || std::isnan(y)) return 2;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_float()) {
    const int c = CompareIntDouble(b.as_int(), a.as_float());
    return c == 2 ? 2 : -c;
  }
  return CompareIntDouble(a.as_int(), b.as_float());
}

bool SameIdentity(const Value& a, const Value& b) {
  if (a.is_namespace()) return &a.ns() == &b.ns();
  if (a.is_loop()) return &a.loop() == &b.loop();
  return false;
}

}  // namespace

absl::Status UndefinedError(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  return absl::InvalidArgumentError(hint.empty() ? "value is undefined" : hint);
}

absl::StatusOr<bool> Equals(const Value& a, const Value& b, Budget& budget) {
  QRAG_RETURN_IF_ERROR(budget.Charge(1));
  if (a.is_number() && b.is_number()) return CompareNumbers(a, b) == 0;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      QRAG_RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(a.text().size() / 64)));
      return a.text().bytes() == b.text().bytes();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple() || a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i) {
        QRAG_ASSIGN_OR_RETURN(bool eq, Equals(a.items()[i], b.items()[i], budget));
        if (!eq) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().entries.size() != b.dict().entries.size()) return false;
      for (const auto& [key, value] : a.dict().entries) {
        QRAG_RETURN_IF_ERROR(budget.Charge(1));
        const Value* other = b.dict().Find(key);
        if (other == nullptr) return false;
        QRAG_ASSIGN_OR_RETURN(bool eq, Equals(value, *other, budget));
        if (!eq) return false;
      }
      return true;
    }
    case Value::Kind::kCallable: {
      const CallableData& x = a.callable();
      const CallableData& y = b.callable();
      if (x.type != y.type || x.name != y.name || x.macro != y.macro) return false;
      if (x.type != CallableData::Type::kMethod) return true;
      return &x == &y;
    }
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
      return SameIdentity(a, b);
    default:
      return false;
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b, std::string_view op, Budget& budget) {
  QRAG_RETURN_IF_ERROR(budget.Charge(1));
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    const int c = CompareNumbers(a, b);
    // NaN: every ordering comparison is false; report "unordered" as a value none of <, <=, >, >= accept.
    return c == 2 ? 2 : c;
  }
  if (a.is_string() && b.is_string()) {
    QRAG_RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(std::min(a.text().size(), b.text().size()) / 64)));
    const int c = a.text().bytes().compare(b.text().bytes());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      QRAG_ASSIGN_OR_RETURN(bool eq, Equals(x[i], y[i], budget));
      if (!eq) return Compare(x[i], y[i], op, budget);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(Cat("'", op, "' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle, Budget& budget) {
  QRAG_RETURN_IF_ERROR(budget.Charge(1));
  switch (haystack.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!needle.is_string()) {
        return absl::InvalidArgumentError(
            Cat("'in <string>' requires string as left operand, not ", needle.TypeName()));
      }
      QRAG_RETURN_IF_ERROR(budget.Charge(static_cast<int64_t>(haystack.text().size() / 16)));
      return haystack.text().view().find(needle.text().view()) != std::string_view::npos;
    case Value::Kind::kList:
      for (const Value& item : haystack.items()) {
        QRAG_ASSIGN_OR_RETURN(bool eq, Equals(item, needle, budget));
        if (eq) return true;
      }
      return false;
    case Value::Kind::kDict: {
      QRAG_RETURN_IF_ERROR(HashKey(needle).status());
      return haystack.dict().Find(needle) != nullptr;
    }
    default:
      return absl::InvalidArgumentError(
          Cat("argument of type '", haystack.TypeName(), "' is not iterable"));
  }
}

}  // namespace qrag::jinja
