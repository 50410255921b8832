// Debian's Abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which
// std::string_view does not convert to. The engine uses std::string_view; Cat() is absl::StrCat that also
// takes std::string_view pieces.
#ifndef QRAG_SERVER_JINJA_ABSL_COMPAT_H_
#define QRAG_SERVER_JINJA_ABSL_COMPAT_H_

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace qrag::jinja {
namespace compat_internal {
inline absl::string_view Piece(std::string_view s) { return absl::string_view(s.data(), s.size()); }
template <typename T>
const T& Piece(const T& v) {
  return v;
}
}  // namespace compat_internal

template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(compat_internal::Piece(args)...);
}

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_ABSL_COMPAT_H_
