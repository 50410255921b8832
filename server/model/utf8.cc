#include "server/model/utf8.h"

#include "absl/strings/str_cat.h"

namespace qrag::model {
namespace {

// The allowed range of the second byte of a sequence, which is what rules out overlong forms,
// surrogates and code points above U+10FFFF (Unicode 15, table 3-7).
void SecondByteRange(uint8_t lead, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (lead == 0xE0) *lo = 0xA0;
  if (lead == 0xED) *hi = 0x9F;
  if (lead == 0xF0) *lo = 0x90;
  if (lead == 0xF4) *hi = 0x8F;
}

// How many bytes at the start of `s` (which starts with a valid multi-byte lead) continue the sequence
// correctly, counting the lead; stops at the first wrong byte or at the end of `s`.
size_t MatchedPrefix(std::string_view s, int need) {
  const uint8_t lead = static_cast<uint8_t>(s[0]);
  size_t matched = 1;
  for (int k = 1; k < need && matched < s.size(); ++k) {
    const uint8_t b = static_cast<uint8_t>(s[matched]);
    uint8_t lo = 0x80, hi = 0xBF;
    if (k == 1) SecondByteRange(lead, &lo, &hi);
    if (b < lo || b > hi) break;
    ++matched;
  }
  return matched;
}

}  // namespace

int Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

size_t ValidUtf8PrefixLength(std::string_view s) {
  const int need = Utf8SequenceLength(static_cast<uint8_t>(s[0]));
  if (need <= 1) return static_cast<size_t>(need);
  return MatchedPrefix(s, need) == static_cast<size_t>(need) ? static_cast<size_t>(need) : 0;
}

size_t FindInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = ValidUtf8PrefixLength(s.substr(i));
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

absl::Status CheckUtf8(std::string_view text, std::string_view what) {
  const size_t bad = FindInvalidUtf8(text);
  if (bad == std::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(absl::string_view(what.data(), what.size()),
                                                 ": invalid UTF-8 at byte ", bad, " (of ", text.size(), ")"));
}

size_t IncompleteUtf8Suffix(std::string_view s) {
  // Look back at most 3 bytes for a multi-byte lead whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const uint8_t b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int need = Utf8SequenceLength(b);
    if (need <= 1 || static_cast<size_t>(need) <= back) return 0;
    return MatchedPrefix(s.substr(n - back), need) == back ? back : 0;
  }
  return 0;
}

std::string ReplaceInvalidUtf8(std::string_view s) {
  if (FindInvalidUtf8(s) == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    const int need = Utf8SequenceLength(b);
    if (need == 0) {
      AppendUtf8(kUnicodeReplacementChar, &out);
      ++i;
      continue;
    }
    const size_t matched = MatchedPrefix(s.substr(i), need);
    if (matched == static_cast<size_t>(need)) {
      out.append(s.substr(i, matched));
    } else {
      AppendUtf8(kUnicodeReplacementChar, &out);  // one U+FFFD per maximal ill-formed subpart
    }
    i += matched;
  }
  return out;
}

char32_t DecodeUtf8At(std::string_view s, size_t* pos) {
  const uint8_t b = static_cast<uint8_t>(s[*pos]);
  const int n = Utf8SequenceLength(b);
  char32_t cp;
  switch (n) {
    case 2:
      cp = b & 0x1F;
      break;
    case 3:
      cp = b & 0x0F;
      break;
    case 4:
      cp = b & 0x07;
      break;
    default:
      ++*pos;
      return b;  // ASCII (or, on misuse, the raw byte)
  }
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[*pos + k]) & 0x3F);
  *pos += n;
  return cp;
}

}  // namespace qrag::model
