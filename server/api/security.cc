#include "server/api/security.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/security/server_credentials.h"

namespace qrag::api {
namespace {

constexpr absl::string_view kBearerPrefix = "Bearer ";

// The PEM block a file must hold: "-----BEGIN <label>-----" with a label ending in `label_suffix`
// ("CERTIFICATE"; "PRIVATE KEY" matches "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY").
absl::Status CheckPem(absl::string_view contents, absl::string_view label_suffix, const std::string& what,
                      const std::string& path) {
  if (contents.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  const size_t begin = contents.find("-----BEGIN ");
  if (begin != absl::string_view::npos) {
    const size_t end = contents.find("-----", begin + 11);
    if (end != absl::string_view::npos &&
        absl::EndsWith(contents.substr(begin + 11, end - begin - 11), label_suffix)) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " ", path, " is not a PEM file with a '", label_suffix, "' block"));
}

}  // namespace

absl::StatusOr<std::string> ReadSecurityFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == EACCES) return absl::PermissionDeniedError(absl::StrCat("cannot read ", path, ": permission denied"));
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> LoadServerTlsCredentials(const ServerTlsFiles& files) {
  if (files.cert_chain.empty() || files.private_key.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate (--tls-cert) and a private key (--tls-key)");
  }
  absl::StatusOr<std::string> cert = ReadSecurityFile(files.cert_chain);
  if (!cert.ok()) return absl::Status(cert.status().code(), absl::StrCat("--tls-cert: ", cert.status().message()));
  if (absl::Status s = CheckPem(*cert, "CERTIFICATE", "--tls-cert", files.cert_chain); !s.ok()) return s;
  absl::StatusOr<std::string> key = ReadSecurityFile(files.private_key);
  if (!key.ok()) return absl::Status(key.status().code(), absl::StrCat("--tls-key: ", key.status().message()));
  if (absl::Status s = CheckPem(*key, "PRIVATE KEY", "--tls-key", files.private_key); !s.ok()) return s;

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!files.client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadSecurityFile(files.client_ca);
    if (!ca.ok()) return absl::Status(ca.status().code(), absl::StrCat("--tls-client-ca: ", ca.status().message()));
    if (absl::Status s = CheckPem(*ca, "CERTIFICATE", "--tls-client-ca", files.client_ca); !s.ok()) return s;
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.empty()) return b.empty();
  // Walk all of b; index a modulo its length so that a's length is not revealed through early exit.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = diff | static_cast<unsigned char>(a[i % a.size()] ^ b[i]);
  }
  return diff == 0;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromTokens(std::vector<std::string> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens given");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) return absl::InvalidArgumentError(absl::StrCat("token ", i + 1, " is empty"));
    for (char c : tokens[i]) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c)) || !absl::ascii_isprint(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError(
            absl::StrCat("token ", i + 1, " contains whitespace or a non-printable character"));
      }
    }
  }
  return TokenAuthenticator(std::move(tokens));
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFileContents(absl::string_view contents,
                                                                        absl::string_view source) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // also drops a '\r' of CRLF files
    if (line.empty() || line.front() == '#') continue;
    for (char c : line) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c)) || !absl::ascii_isprint(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, " line ", line_number, ": a token must be one word of printable ASCII characters"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " holds no token (one per line; blank lines and '#' comments are ignored)"));
  }
  return FromTokens(std::move(tokens));
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  absl::StatusOr<std::string> contents = ReadSecurityFile(path);
  if (!contents.ok()) {
    return absl::Status(contents.status().code(), absl::StrCat("--auth-tokens: ", contents.status().message()));
  }
  return FromFileContents(*contents, absl::StrCat("--auth-tokens ", path));
}

absl::Status TokenAuthenticator::CheckAuthorization(const absl::string_view* authorization) const {
  if (authorization == nullptr) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  absl::string_view value = *authorization;
  if (value.size() < kBearerPrefix.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearerPrefix.size()), kBearerPrefix)) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
  }
  value = absl::StripAsciiWhitespace(value.substr(kBearerPrefix.size()));
  if (value.empty()) return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'; the token is empty");
  bool accepted = false;
  for (const std::string& token : tokens_) accepted |= ConstantTimeEquals(token, value);  // no early exit
  if (!accepted) return absl::UnauthenticatedError("the bearer token is not valid");
  return absl::OkStatus();
}

absl::Status TokenAuthenticator::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const {
  const auto range = client_metadata.equal_range("authorization");
  if (range.first == range.second) return CheckAuthorization(nullptr);
  if (std::next(range.first) != range.second) {
    return absl::UnauthenticatedError("more than one authorization metadata entry");
  }
  const absl::string_view value(range.first->second.data(), range.first->second.size());
  return CheckAuthorization(&value);
}

}  // namespace qrag::api
