// qrag::client::Client: a C++ client of a qrag server (qrag.v1.Inference, qrag.v1.Admin, grpc.health.v1).
//
// Requests and responses are the public qrag.v1 messages (proto/qrag/v1/*.proto), so every field documented
// there is available. Errors come back as absl::Status with the gRPC code unchanged (the codes are the same
// numbers) and the server's message, e.g. INVALID_ARGUMENT "top_p must be in (0, 1] (got 1.5); 1 = off".
//
// Thread-safe: one Client may be used from many threads at once (it holds one channel; gRPC multiplexes
// calls over it). Each call blocks its caller until it completes; GenerateStream runs the callback on the
// caller's thread.
#ifndef QRAG_CLIENT_CLIENT_H_
#define QRAG_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/status.h"
#include "qrag/v1/admin.pb.h"
#include "qrag/v1/inference.pb.h"

namespace qrag::client {

struct ClientOptions {
  std::string server;  // "HOST:PORT" (any gRPC target: "dns:///host:port", "unix:/path", ...)
  // Null: plaintext. TLS: LoadTlsCredentials(...) or grpc::SslCredentials(...).
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // TLS only: the name the server's certificate must carry, when it differs from the host in `server`
  // (e.g. connecting to 127.0.0.1 with a certificate for "localhost"). Empty: the host in `server`.
  std::string tls_server_name;
  int max_receive_message_bytes = 64 << 20;
  // Sent with every call, e.g. {"authorization", "Bearer TOKEN"}. Keys must be lowercase.
  std::vector<std::pair<std::string, std::string>> metadata;
};

struct CallOptions {
  // The call's deadline is now + timeout; the server stops working on the request when it passes
  // (DEADLINE_EXCEEDED). Infinite: no deadline.
  absl::Duration timeout = absl::InfiniteDuration();
  // Wait for the server to become reachable instead of failing fast with UNAVAILABLE.
  bool wait_for_ready = false;
};

struct ClientTlsFiles {
  std::string ca;           // PEM: the CA(s) the server certificate must chain to; empty: system roots
  std::string cert_chain;   // PEM: this client's certificate, for mutual TLS; needs private_key
  std::string private_key;  // PEM: its private key
};

// TLS channel credentials from PEM files. NOT_FOUND / PERMISSION_DENIED for a file that cannot be read,
// INVALID_ARGUMENT for one that is empty or not PEM, or a certificate without a key (or the reverse).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> LoadTlsCredentials(const ClientTlsFiles& files);

// {"authorization", "Bearer " + token}: the metadata entry qrag-server --auth-tokens expects.
std::pair<std::string, std::string> BearerTokenMetadata(const std::string& token);

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class HealthStatus { kUnknown, kServing, kNotServing, kServiceUnknown };
// "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN".
const char* HealthStatusName(HealthStatus status);

// Called with every GenerateStream message, in order. Return false to cancel the call: GenerateStream then
// returns CANCELLED and the server frees the request's resources.
using StreamCallback = std::function<bool(const qrag::v1::GenerateStreamResponse&)>;

// Called with every ChatStream message, in order; false cancels the call, as for GenerateStream.
using ChatStreamCallback = std::function<bool(const qrag::v1::ChatStreamResponse&)>;

// grpc::Status -> absl::Status, same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

class Client {
 public:
  // INVALID_ARGUMENT when options.server is empty. Does not connect yet (the first call does).
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<qrag::v1::GenerateResponse> Generate(const qrag::v1::GenerateRequest& request,
                                                      const CallOptions& call = {});

  // Streams the completion into `on_message`; returns the last message (finish_reason, usage, timings; its
  // text, if any, was passed to on_message too).
  absl::StatusOr<qrag::v1::GenerateStreamResponse> GenerateStream(const qrag::v1::GenerateRequest& request,
                                                                  const StreamCallback& on_message,
                                                                  const CallOptions& call = {});

  // A conversation answered with the model's chat template (qrag.v1.Inference.Chat / ChatStream).
  absl::StatusOr<qrag::v1::ChatResponse> Chat(const qrag::v1::ChatRequest& request, const CallOptions& call = {});
  absl::StatusOr<qrag::v1::ChatStreamResponse> ChatStream(const qrag::v1::ChatRequest& request,
                                                          const ChatStreamCallback& on_message,
                                                          const CallOptions& call = {});
  // The rendered template and the token ids the model would see.
  absl::StatusOr<qrag::v1::ApplyChatTemplateResponse> ApplyChatTemplate(const qrag::v1::ChatRequest& request,
                                                                        const CallOptions& call = {});

  absl::StatusOr<std::vector<qrag::v1::ModelInfo>> ListModels(const CallOptions& call = {});
  absl::StatusOr<qrag::v1::ModelInfo> GetModelInfo(std::string_view model, const CallOptions& call = {});

  // grpc.health.v1.Health/Check of `service` ("" = the whole server). An unreachable server is UNAVAILABLE.
  absl::StatusOr<HealthStatus> Health(std::string_view service = "", const CallOptions& call = {});

  // qrag.v1.Admin/GetServerStats of `model` ("" = the default model).
  absl::StatusOr<qrag::v1::ServerStats> ServerStats(std::string_view model = "", const CallOptions& call = {});

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }

 private:
  class Stubs;
  Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  std::shared_ptr<grpc::Channel> channel_;
  ClientOptions options_;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace qrag::client

#endif  // QRAG_CLIENT_CLIENT_H_
