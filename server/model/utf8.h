// UTF-8 helpers shared by the tokenizers: validation with a byte offset, code point iteration, detection
// of an unfinished sequence at the end of a byte string, and lossy repair (U+FFFD).
//
// "Valid" follows RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
// All functions are pure and thread-safe.
#ifndef QRAG_SERVER_MODEL_UTF8_H_
#define QRAG_SERVER_MODEL_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/common/utf8_encode.h"  // AppendUtf8, for the users of this header

namespace qrag::model {

inline constexpr char32_t kUnicodeReplacementChar = 0xFFFD;

// The number of bytes of a well-formed sequence that starts with `lead` (1..4), or 0 when `lead` cannot
// start one (a continuation byte, 0xC0, 0xC1, 0xF5..0xFF).
int Utf8SequenceLength(uint8_t lead);

// The length of the well-formed UTF-8 sequence at the start of `s`, or 0 when it is not well formed
// (including when it is cut short by the end of `s`). `s` must not be empty.
size_t ValidUtf8PrefixLength(std::string_view s);

// The byte offset of the first ill-formed or truncated sequence in `s`, or std::string_view::npos.
size_t FindInvalidUtf8(std::string_view s);

// OK when `text` is well-formed UTF-8; otherwise INVALID_ARGUMENT "<what>: invalid UTF-8 at byte N".
absl::Status CheckUtf8(std::string_view text, std::string_view what);

// The number of bytes (0..3) at the very end of `s` that are the correct beginning of a multi-byte
// sequence that has not finished yet, i.e. that more bytes could still complete.
size_t IncompleteUtf8Suffix(std::string_view s);

// `s` with each maximal ill-formed subpart replaced by U+FFFD (the Unicode "best practice", as Python's
// errors="replace" and Rust's from_utf8_lossy do). Well-formed input is returned unchanged.
std::string ReplaceInvalidUtf8(std::string_view s);


// Decodes the code point at `s[*pos]` and advances `*pos` past it. `s` must be well-formed at `*pos`.
char32_t DecodeUtf8At(std::string_view s, size_t* pos);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_UTF8_H_
