#include "server/api/status_mapping.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace qrag::api {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // The canonical codes are 1..16 in both libraries (0 is OK).
  if (code < 1 || code > 16) {
    return grpc::Status(grpc::StatusCode::UNKNOWN,
                        absl::StrCat("non-canonical status code ", code, ": ", status.message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(status.message()));
}

}  // namespace qrag::api
