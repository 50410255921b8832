// Text: UTF-8 bytes that remember, byte by byte, whether they came from untrusted input.
//
// Chat templates mix literal text and trusted variables (bos_token, ...) with untrusted message contents.
// The server must recognise special-token text (`<|im_end|>`, ...) only where the template put it, never
// inside what a user wrote. So every string the Jinja engine handles is a Text: the bytes plus the sorted
// list of byte ranges that are untrusted. Every string operation of the engine keeps the taint of the bytes
// it copies; bytes it invents because of an untrusted input (padding of an untrusted value, escapes of an
// untrusted character, a number read from the input) are untrusted too.
//
// A Text is a value type; it is not thread-safe to mutate one from two threads.
#ifndef QRAG_SERVER_JINJA_TEXT_H_
#define QRAG_SERVER_JINJA_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qrag::jinja {

// Where a value came from. Untrusted: the request (message contents, tools, ...). Trusted: the template
// and the values the server itself supplies (bos_token, eos_token, add_generation_prompt, ...).
enum class Trust : uint8_t { kTrusted, kUntrusted };

// A half-open byte range [begin, end).
struct Span {
  size_t begin = 0;
  size_t end = 0;
  friend bool operator==(const Span&, const Span&) = default;
};

class Text {
 public:
  Text() = default;
  explicit Text(std::string bytes, Trust trust = Trust::kTrusted);

  const std::string& bytes() const { return bytes_; }
  std::string_view view() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  // The untrusted byte ranges: sorted, disjoint, never adjacent (touching ranges are merged).
  const std::vector<Span>& untrusted() const { return untrusted_; }
  bool AnyUntrusted() const { return !untrusted_.empty(); }
  // True when any byte of [begin, end) is untrusted.
  bool AnyUntrustedIn(size_t begin, size_t end) const;
  bool IsUntrusted(size_t pos) const { return AnyUntrustedIn(pos, pos + 1); }

  void Append(const Text& other);
  // Appends bytes [begin, end) of `other` with their taint.
  void Append(const Text& other, size_t begin, size_t end);
  void Append(std::string_view bytes, Trust trust);
  // Appends `bytes`, untrusted when `untrusted` is true.
  void AppendMarked(std::string_view bytes, bool untrusted) {
    Append(bytes, untrusted ? Trust::kUntrusted : Trust::kTrusted);
  }
  // Bytes [begin, end) as a new Text.
  Text Slice(size_t begin, size_t end) const;
  // Marks [begin, end) untrusted (the bytes must exist).
  void MarkUntrusted(size_t begin, size_t end);
  void Reserve(size_t n) { bytes_.reserve(n); }

  friend bool operator==(const Text&, const Text&) = default;

 private:
  void AddSpanAtEnd(size_t begin, size_t end);

  std::string bytes_;
  std::vector<Span> untrusted_;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_TEXT_H_
