// The gRPC server of qrag-server: the Inference and Admin services, grpc.health.v1 (gRPC's default health
// service) and server reflection (so grpcurl-style tools discover qrag.v1), on one listening address.
//
// Security comes through GrpcServerOptions: `credentials` (TLS / mutual TLS, see security.h) and
// `authenticator` (bearer tokens, checked by every qrag.v1 method); health and reflection stay open to all.
//
// Thread-safe. The ServingState passed to Start must outlive the GrpcServer.
#ifndef QRAG_SERVER_API_GRPC_SERVER_H_
#define QRAG_SERVER_API_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"

namespace qrag::api {

struct GrpcServerOptions {
  std::string listen_address;                  // "HOST:PORT"; port 0 picks a free port (see address())
  int max_receive_message_bytes = 4 << 20;     // larger requests fail with RESOURCE_EXHAUSTED
  std::shared_ptr<grpc::ServerCredentials> credentials;  // null: plaintext
  // Non-null: qrag.v1 calls need an accepted bearer token (UNAUTHENTICATED otherwise).
  std::shared_ptr<const TokenAuthenticator> authenticator;
  // The work queue of retrieval work (Retrieval calls, Generate's rag option): threads, and calls that may
  // wait for one before new ones are RESOURCE_EXHAUSTED.
  int work_threads = 4;
  int work_max_queued = 256;
};

class AdminService;
class InferenceService;
class RetrievalService;

class GrpcServer {
 public:
  // Builds the server and starts listening, with health NOT_SERVING. UNAVAILABLE when the address cannot
  // be bound (in use, not an address), INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options, ServingState* state);

  ~GrpcServer();  // Shutdown(absl::ZeroDuration()) unless already shut down.
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The bound address with the real port (e.g. "127.0.0.1:41235" for "127.0.0.1:0").
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // The work queue of retrieval and embedding work, shared with the HTTP API; lives as long as the server.
  WorkQueue* work() const { return work_.get(); }

  // Health of "" (the server) and "qrag.v1.Inference": SERVING or NOT_SERVING.
  void SetServing(bool serving);

  // Stops accepting connections; calls still open after `grace` are cancelled; returns when every call has
  // ended and the work queue's queued tasks ran (it refuses new ones from then on). Health reads NOT_SERVING from
  // the start. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;

  // Declared first, destroyed last: calls finishing during Shutdown may still need it.
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<InferenceService> inference_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<RetrievalService> retrieval_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_GRPC_SERVER_H_
