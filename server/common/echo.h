// Client-supplied values quoted in error messages, capped: a status message travels in gRPC trailing metadata
// (an 8 KiB default limit on the client), so echoing an oversized value whole turns the error the client
// should see (NOT_FOUND: no such model) into RESOURCE_EXHAUSTED about metadata. One rule for every echo.
#ifndef QRAG_SERVER_COMMON_ECHO_H_
#define QRAG_SERVER_COMMON_ECHO_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace qrag {

inline constexpr size_t kMaxEchoBytes = 64;

// 'value' when it is at most max_bytes long; else its first bytes up to a UTF-8 character boundary, then
// "...' (N bytes)". Control characters are shown as '?', so a message stays one printable line.
std::string Echo(std::string_view value, size_t max_bytes = kMaxEchoBytes);

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_ECHO_H_
