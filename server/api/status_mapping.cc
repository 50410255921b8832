#include "server/api/status_mapping.h"

#include <string>

namespace qrag::api {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::Status::code() is always canonical (1..16; a raw code outside the range reads as kUnknown), and the
  // canonical codes have the same numbers in gRPC.
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(status.code())), std::string(status.message()));
}

}  // namespace qrag::api
