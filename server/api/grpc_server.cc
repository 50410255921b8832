#include "server/api/grpc_server.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/api/admin_service.h"
#include "server/api/inference_service.h"
#include "server/api/retrieval_service.h"

namespace qrag::api {
namespace {

constexpr char kInferenceServiceName[] = "qrag.v1.Inference";

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& options,
                                                              ServingState* state) {
  const size_t colon = options.listen_address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address '", options.listen_address, "' is not HOST:PORT"));
  }
  if (options.max_receive_message_bytes <= 0) {
    return absl::InvalidArgumentError("max_receive_message_bytes must be > 0");
  }
  if (options.work_threads < 1 || options.work_max_queued < 1) {
    return absl::InvalidArgumentError("work_threads and work_max_queued must be >= 1");
  }
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->work_ = std::make_unique<WorkQueue>(WorkQueueOptions{
      .threads = options.work_threads, .max_queued = options.work_max_queued, .name = "retrieval work"});
  server->inference_ = std::make_unique<InferenceService>(state, server->work_.get(), options.authenticator);
  server->admin_ = std::make_unique<AdminService>(state, options.authenticator);
  server->retrieval_ = std::make_unique<RetrievalService>(state, server->work_.get(), options.authenticator);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials =
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials();
  int selected_port = 0;
  builder.AddListeningPort(options.listen_address, credentials, &selected_port);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC enables SO_REUSEPORT by default on Linux: a second server on a busy port would then start and
  // silently share its traffic. Binding a busy port must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(server->inference_.get());
  builder.RegisterService(server->admin_.get());
  builder.RegisterService(server->retrieval_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || selected_port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen_address,
        options.credentials != nullptr ? " (address in use, not a local address, or the TLS certificate/key "
                                         "rejected: do they match?)"
                                       : " (address in use, or not a local address)"));
  }
  server->port_ = selected_port;
  server->address_ = absl::StrCat(options.listen_address.substr(0, colon), ":", selected_port);
  server->SetServing(false);
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

void GrpcServer::SetServing(bool serving) {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kInferenceServiceName, serving);
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  SetServing(false);
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  server_->Wait();
  // Every call has ended; the work queue's last tasks (the HTTP API's, which shares it: shut that down first)
  // run now, while the models and collections they use are still alive.
  work_->Shutdown();
}

}  // namespace qrag::api
