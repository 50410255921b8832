// The few Unicode facts Python's str methods need, without a Unicode library (qrag_jinja links only
// qrag_common, Abseil and nlohmann_json). Strings are UTF-8; a byte that does not start a valid sequence
// counts as one code point of its own and is copied through unchanged.
#ifndef QRAG_SERVER_JINJA_UNICODE_H_
#define QRAG_SERVER_JINJA_UNICODE_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "server/common/utf8_encode.h"  // AppendUtf8, for the users of this header

namespace qrag::jinja {

// Decodes the code point at byte `pos` (< s.size()); returns its byte length (1 to 4). An invalid sequence
// gives length 1 and *cp = 0xFFFD.
size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);

// Byte offset of every code point of `s`, followed by s.size(); empty `s` gives {0}.
std::vector<size_t> CodePointStarts(std::string_view s);
// True when every byte is below 0x80.
bool IsAscii(std::string_view s);
// Number of code points (Python's len()).
size_t CodePointCount(std::string_view s);
// Byte offset of code point `index` of `s` (index <= CodePointCount(s); the count gives s.size()).
size_t CodePointOffset(std::string_view s, size_t index);
// Byte offset where the code point that ends at byte `pos` (> 0) starts, segmenting as DecodeUtf8 does.
size_t PrevCodePointStart(std::string_view s, size_t pos);

// Python's str.isspace() for one code point.
bool IsPySpace(char32_t cp);
// Python's str.splitlines() line boundaries (\n \r \v \f \x1c \x1d \x1e \x85 U+2028 U+2029).
bool IsPyLineBreak(char32_t cp);
// A line of Python's str.splitlines(): the text is [begin, end), its line break [end, break_end).
struct LineRange {
  size_t begin, end, break_end;
};
std::vector<LineRange> PySplitLines(std::string_view s);

// Python's str.isprintable() for one code point, for repr(). Exact for ASCII, Latin-1, the space and
// format characters; code points unassigned in Unicode are treated as printable.
bool IsPyPrintable(char32_t cp);

// Simple case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; other code points map to
// themselves (Python maps more, e.g. 'ß'.upper() == 'SS').
char32_t ToUpper(char32_t cp);
char32_t ToLower(char32_t cp);
// Cased letter / letter / decimal digit, with the same coverage as the case mapping.
bool IsCased(char32_t cp);
bool IsAlpha(char32_t cp);
bool IsDigit(char32_t cp);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_UNICODE_H_
