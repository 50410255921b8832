// UTF-8 encoding of one code point, shared by the tokenizers (model/) and the chat-template engine (jinja/).
#ifndef QRAG_SERVER_COMMON_UTF8_ENCODE_H_
#define QRAG_SERVER_COMMON_UTF8_ENCODE_H_

#include <string>

namespace qrag {

// Appends the UTF-8 encoding of `cp` to `out`; a surrogate or a value past U+10FFFF (not a scalar value)
// is encoded as U+FFFD.
void AppendUtf8(char32_t cp, std::string* out);

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_UTF8_ENCODE_H_
