// Python comparison semantics for Values: ==, ordering and `in`. Each charges `budget` per element it
// visits, so comparing large shared structures is bounded.
#ifndef QRAG_SERVER_JINJA_COMPARE_H_
#define QRAG_SERVER_JINJA_COMPARE_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "server/jinja/budget.h"
#include "server/jinja/value.h"

namespace qrag::jinja {

// a == b: numbers across bool/int/float, lists element-wise (a list never equals a tuple), dicts by
// content, undefined equals only undefined, namespaces and loops by identity.
absl::StatusOr<bool> Equals(const Value& a, const Value& b, Budget& budget);

// Ordering for <, <=, >, >=: negative, zero or positive. Numbers, strings (code point order) and lists or
// tuples of the same kind (lexicographic); INVALID_ARGUMENT otherwise, naming `op` as Python does.
absl::StatusOr<int> Compare(const Value& a, const Value& b, std::string_view op, Budget& budget);

// `needle in haystack`: substring, list element, dict key; false for undefined; error for the rest.
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle, Budget& budget);

// jinja2's error for using an undefined value ("'x' is undefined" or the hint it was made with).
absl::Status UndefinedError(const Value& undefined);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_COMPARE_H_
