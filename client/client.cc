#include "client/client.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "qrag/v1/admin.grpc.pb.h"
#include "qrag/v1/inference.grpc.pb.h"

namespace qrag::client {

class Client::Stubs {
 public:
  explicit Stubs(const std::shared_ptr<grpc::Channel>& channel)
      : inference(qrag::v1::Inference::NewStub(channel)),
        admin(qrag::v1::Admin::NewStub(channel)),
        health(grpc::health::v1::Health::NewStub(channel)) {}
  std::unique_ptr<qrag::v1::Inference::Stub> inference;
  std::unique_ptr<qrag::v1::Admin::Stub> admin;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
};

namespace {

void Prepare(const ClientOptions& options, const CallOptions& call, grpc::ClientContext* context) {
  if (call.timeout != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(call.timeout));
  }
  context->set_wait_for_ready(call.wait_for_ready);
  for (const auto& [key, value] : options.metadata) context->AddMetadata(key, value);
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg = absl::StrCat(what, ": cannot open ", path, ": ", std::strerror(err));
    return err == EACCES ? absl::PermissionDeniedError(msg) : absl::NotFoundError(msg);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " is not a PEM file"));
  }
  return pem;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> LoadTlsCredentials(const ClientTlsFiles& files) {
  if (files.cert_chain.empty() != files.private_key.empty()) {
    return absl::InvalidArgumentError("a client certificate and its private key go together");
  }
  grpc::SslCredentialsOptions options;
  if (!files.ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(files.ca, "TLS CA");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
  }
  if (!files.cert_chain.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(files.cert_chain, "TLS client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(files.private_key, "TLS client key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

std::pair<std::string, std::string> BearerTokenMetadata(const std::string& token) {
  return {"authorization", absl::StrCat("Bearer ", token)};
}

const char* HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kUnknown: return "UNKNOWN";
    case HealthStatus::kServing: return "SERVING";
    case HealthStatus::kNotServing: return "NOT_SERVING";
    case HealthStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
  }
  return "UNKNOWN";
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("no server address given");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(options.server, credentials, args);
  return std::unique_ptr<Client>(new Client(std::move(channel), options));
}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : channel_(std::move(channel)), options_(std::move(options)), stubs_(std::make_unique<Stubs>(channel_)) {}

Client::~Client() = default;

absl::StatusOr<qrag::v1::GenerateResponse> Client::Generate(const qrag::v1::GenerateRequest& request,
                                                            const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::GenerateResponse response;
  grpc::Status s = stubs_->inference->Generate(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

namespace {

// Reads a server stream into `on_message` (false: cancel); the last message, which must carry finish_reason.
template <typename Response, typename Callback>
absl::StatusOr<Response> ReadStream(grpc::ClientContext& context, grpc::ClientReader<Response>& reader,
                                    const Callback& on_message) {
  Response message, last;
  bool cancelled = false;
  while (reader.Read(&message)) {
    if (on_message && !on_message(message)) {
      cancelled = true;
      context.TryCancel();
      while (reader.Read(&message)) {  // drain what is already in flight
      }
      break;
    }
    last = std::move(message);
    message.Clear();
  }
  grpc::Status s = reader.Finish();
  if (cancelled) return absl::CancelledError("stream cancelled by the caller");
  if (!s.ok()) return FromGrpcStatus(s);
  if (last.finish_reason().empty()) {
    return absl::InternalError("the stream ended without a final message (no finish_reason)");
  }
  return last;
}

}  // namespace

absl::StatusOr<qrag::v1::GenerateStreamResponse> Client::GenerateStream(const qrag::v1::GenerateRequest& request,
                                                                        const StreamCallback& on_message,
                                                                        const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  std::unique_ptr<grpc::ClientReader<qrag::v1::GenerateStreamResponse>> reader =
      stubs_->inference->GenerateStream(&context, request);
  return ReadStream(context, *reader, on_message);
}

absl::StatusOr<qrag::v1::ChatResponse> Client::Chat(const qrag::v1::ChatRequest& request, const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::ChatResponse response;
  grpc::Status s = stubs_->inference->Chat(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<qrag::v1::ChatStreamResponse> Client::ChatStream(const qrag::v1::ChatRequest& request,
                                                                const ChatStreamCallback& on_message,
                                                                const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  std::unique_ptr<grpc::ClientReader<qrag::v1::ChatStreamResponse>> reader =
      stubs_->inference->ChatStream(&context, request);
  return ReadStream(context, *reader, on_message);
}

absl::StatusOr<qrag::v1::ApplyChatTemplateResponse> Client::ApplyChatTemplate(const qrag::v1::ChatRequest& request,
                                                                              const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::ApplyChatTemplateResponse response;
  grpc::Status s = stubs_->inference->ApplyChatTemplate(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<std::vector<qrag::v1::ModelInfo>> Client::ListModels(const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::ListModelsResponse response;
  grpc::Status s = stubs_->inference->ListModels(&context, qrag::v1::ListModelsRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<qrag::v1::ModelInfo>(response.models().begin(), response.models().end());
}

absl::StatusOr<qrag::v1::ModelInfo> Client::GetModelInfo(std::string_view model, const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::GetModelInfoRequest request;
  request.set_model(std::string(model));
  qrag::v1::ModelInfo response;
  grpc::Status s = stubs_->inference->GetModelInfo(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<HealthStatus> Client::Health(std::string_view service, const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = stubs_->health->Check(&context, request, &response);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return HealthStatus::kServiceUnknown;
  if (!s.ok()) return FromGrpcStatus(s);
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING: return HealthStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING: return HealthStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN: return HealthStatus::kServiceUnknown;
    default: return HealthStatus::kUnknown;
  }
}

absl::StatusOr<qrag::v1::ServerStats> Client::ServerStats(std::string_view model, const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(options_, call, &context);
  qrag::v1::GetServerStatsRequest request;
  request.set_model(std::string(model));
  qrag::v1::ServerStats response;
  grpc::Status s = stubs_->admin->GetServerStats(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace qrag::client
