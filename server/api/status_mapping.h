// The one mapping from absl::Status (used everywhere inside qrag) to grpc::Status (what clients see).
//
// absl and gRPC share the canonical code numbering (google.rpc.Code), so every code maps to itself; the
// message is kept, because it tells the client what to fix. Every RPC handler of server/api/ reports errors
// through ToGrpcStatus and nothing else, so the mapping can change in one place (e.g. to scrub INTERNAL
// messages or attach google.rpc.Status details).
//
// Thread-safe (pure functions).
#ifndef QRAG_SERVER_API_STATUS_MAPPING_H_
#define QRAG_SERVER_API_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace qrag::api {

// OK -> grpc::Status::OK; otherwise the same code and message. A status built with a code outside the
// canonical range (a bug) becomes UNKNOWN, keeping its message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_STATUS_MAPPING_H_
