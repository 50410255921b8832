#include "server/common/echo.h"

#include "absl/strings/str_cat.h"

namespace qrag {

std::string Echo(std::string_view value, size_t max_bytes) {
  size_t n = value.size();
  const bool cut = n > max_bytes;
  if (cut) {
    n = max_bytes;
    // Back up over continuation bytes (10xxxxxx) so a multi-byte character is not split.
    while (n > 0 && (static_cast<unsigned char>(value[n]) & 0xC0) == 0x80) --n;
  }
  std::string out = "'";
  out.reserve(n + 24);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    out.push_back(c < 0x20 || c == 0x7F ? '?' : static_cast<char>(c));
  }
  if (cut) return absl::StrCat(out, "...' (", value.size(), " bytes)");
  out.push_back('\'');
  return out;
}

}  // namespace qrag
