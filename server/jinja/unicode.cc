#include "server/jinja/unicode.h"

#include <algorithm>

namespace qrag::jinja {

size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len = 0;
  char32_t value = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, value = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, value = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, value = b0 & 0x07, min = 0x10000;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  if (pos + len > s.size()) {
    *cp = 0xFFFD;
    return 1;
  }
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    value = (value << 6) | (b & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
    *cp = 0xFFFD;
    return 1;
  }
  *cp = value;
  return len;
}

std::vector<size_t> CodePointStarts(std::string_view s) {
  std::vector<size_t> starts;
  starts.reserve(s.size() + 1);
  char32_t cp;
  for (size_t pos = 0; pos < s.size(); pos += DecodeUtf8(s, pos, &cp)) starts.push_back(pos);
  starts.push_back(s.size());
  return starts;
}

bool IsAscii(std::string_view s) {
  unsigned char any = 0;
  for (char c : s) any |= static_cast<unsigned char>(c);
  return any < 0x80;
}

size_t CodePointCount(std::string_view s) {
  if (IsAscii(s)) return s.size();
  size_t n = 0;
  char32_t cp;
  for (size_t pos = 0; pos < s.size(); pos += DecodeUtf8(s, pos, &cp)) ++n;
  return n;
}

size_t CodePointOffset(std::string_view s, size_t index) {
  if (IsAscii(s)) return std::min(index, s.size());
  size_t pos = 0;
  char32_t cp;
  for (size_t i = 0; i < index && pos < s.size(); ++i) pos += DecodeUtf8(s, pos, &cp);
  return pos;
}

size_t PrevCodePointStart(std::string_view s, size_t pos) {
  // A valid sequence ending at `pos` is one code point; anything else is one invalid byte.
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  char32_t cp;
  return start + DecodeUtf8(s, start, &cp) == pos ? start : pos - 1;
}

bool IsPySpace(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool IsPyLineBreak(char32_t cp) {
  return (cp >= 0x0A && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 ||
         cp == 0x2029;
}

std::vector<LineRange> PySplitLines(std::string_view s) {
  std::vector<LineRange> lines;
  size_t start = 0;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    const size_t len = DecodeUtf8(s, pos, &cp);
    if (!IsPyLineBreak(cp)) {
      pos += len;
      continue;
    }
    size_t end = pos + len;
    if (cp == '\r' && end < s.size() && s[end] == '\n') ++end;
    lines.push_back({start, pos, end});
    pos = start = end;
  }
  if (start < s.size()) lines.push_back({start, s.size(), s.size()});
  return lines;
}

bool IsPyPrintable(char32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0)) return false;  // Cc, and U+00A0 (Zs)
  if (cp == 0xAD) return false;                                 // soft hyphen (Cf)
  if (cp < 0x300) return true;
  if (IsPySpace(cp)) return false;                              // Zs, Zl, Zp (the ASCII space is above)
  if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x206F))
    return false;                                               // zero-width, bidi controls (Cf)
  if ((cp >= 0x0600 && cp <= 0x0605) || cp == 0x061C || cp == 0x06DD || cp == 0x070F || cp == 0x180E ||
      cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) || cp == 0x110BD || (cp >= 0x1D173 && cp <= 0x1D17A) ||
      cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F))
    return false;                                               // other Cf
  if ((cp >= 0xD800 && cp <= 0xF8FF) || cp >= 0xF0000) return false;  // surrogates, private use (Cs, Co)
  if (cp == 0xFFFE || cp == 0xFFFF) return false;
  return true;
}

namespace {

// Pairs (lower, upper) whose UTF-8 lengths agree, so a case change never moves a byte boundary.
bool LatinPairLower(char32_t cp) {  // Latin Extended-A: even code point upper, odd lower (mostly)
  return cp >= 0x100 && cp <= 0x17F && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149 &&
         cp != 0x17F && ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E) ? (cp % 2 == 0) : (cp % 2 == 1));
}

}  // namespace

char32_t ToUpper(char32_t cp) {
  if (cp >= 'a' && cp <= 'z') return cp - 32;
  if (cp < 0x80) return cp;
  if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)) return cp - 32;
  if (cp == 0xFF) return 0x178;
  if (LatinPairLower(cp)) return cp - 1;
  if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return cp - 32;  // Greek
  if (cp == 0x3C2) return 0x3A3;                                   // final sigma
  if (cp >= 0x430 && cp <= 0x44F) return cp - 32;                  // Cyrillic
  if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
  return cp;
}

char32_t ToLower(char32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp < 0x80) return cp;
  if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)) return cp + 32;
  if (cp == 0x178) return 0xFF;
  if (cp >= 0x100 && cp <= 0x17F && LatinPairLower(cp + 1)) return cp + 1;
  if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
  if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
  return cp;
}

bool IsCased(char32_t cp) { return ToUpper(cp) != cp || ToLower(cp) != cp; }

bool IsAlpha(char32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  if (cp == 0xAA || cp == 0xB5 || cp == 0xBA || cp == 0xDF) return true;
  if (IsCased(cp)) return true;
  // CJK, Hiragana/Katakana, Hangul, Arabic and Hebrew letters count as letters too.
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3041 && cp <= 0x30FF && cp != 0x30A0 && cp != 0x30FB) ||
         (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0x0621 && cp <= 0x064A) || (cp >= 0x05D0 && cp <= 0x05EA);
}

bool IsDigit(char32_t cp) { return cp >= '0' && cp <= '9'; }

}  // namespace qrag::jinja
