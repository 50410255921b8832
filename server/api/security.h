// Transport security and caller authentication of qrag-server.
//
// - TLS: LoadServerTlsCredentials reads PEM files (server certificate chain + private key; optionally the CA
//   that client certificates must chain to, which turns on mutual TLS: a client without a valid certificate
//   fails the handshake).
// - Bearer tokens: TokenAuthenticator holds the accepted tokens (from a file: one per line, blank lines and
//   lines starting with '#' ignored). A qrag.v1 call must carry the metadata `authorization: Bearer <token>`;
//   otherwise it ends UNAUTHENTICATED with a message saying what was missing or wrong (never echoing the
//   token). grpc.health.v1 and server reflection are not checked: load balancers and tools probe them.
//
// Tokens are compared in constant time with respect to the accepted tokens' contents: every accepted token
// is compared with every byte of the presented one, without early exit.
//
// Thread-safe after construction (Check is const).
#ifndef QRAG_SERVER_API_SECURITY_H_
#define QRAG_SERVER_API_SECURITY_H_

#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/string_ref.h"

namespace qrag::api {

struct ServerTlsFiles {
  std::string cert_chain;  // PEM: the server's certificate (then intermediates); required
  std::string private_key; // PEM: its private key; required
  std::string client_ca;   // PEM: CA(s) for client certificates; non-empty = mutual TLS (certificate required)
};

// NOT_FOUND / PERMISSION_DENIED when a file cannot be read, INVALID_ARGUMENT when it is empty or not PEM of
// the expected kind; each message names the flag's file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> LoadServerTlsCredentials(const ServerTlsFiles& files);

// Reads a whole file; NOT_FOUND (missing), PERMISSION_DENIED (unreadable), INVALID_ARGUMENT (a directory).
absl::StatusOr<std::string> ReadSecurityFile(const std::string& path);

// true when a == b; the time taken depends only on b's length and on whether a is empty.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

class TokenAuthenticator {
 public:
  // INVALID_ARGUMENT when `tokens` is empty or a token is empty or contains whitespace.
  static absl::StatusOr<TokenAuthenticator> FromTokens(std::vector<std::string> tokens);
  // The file format above; errors name `path` (and the line for a malformed token).
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);
  // The parser behind FromFile; `source` names the file in messages.
  static absl::StatusOr<TokenAuthenticator> FromFileContents(absl::string_view contents, absl::string_view source);

  // OK when the call's metadata holds exactly one `authorization: Bearer <token>` with an accepted token;
  // UNAUTHENTICATED otherwise.
  absl::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const;
  // The same for the value of an authorization header (nullptr: no header).
  absl::Status CheckAuthorization(const absl::string_view* authorization) const;

  size_t size() const { return tokens_.size(); }

 private:
  explicit TokenAuthenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  std::vector<std::string> tokens_;
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_SECURITY_H_
