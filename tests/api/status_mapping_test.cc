#include "server/api/status_mapping.h"

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace qrag::api {
namespace {

TEST(StatusMapping, OkIsOk) { EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok()); }

TEST(StatusMapping, EveryCanonicalCodeKeepsCodeAndMessage) {
  const struct {
    absl::Status in;
    grpc::StatusCode out;
  } cases[] = {
      {absl::CancelledError("m"), grpc::StatusCode::CANCELLED},
      {absl::UnknownError("m"), grpc::StatusCode::UNKNOWN},
      {absl::InvalidArgumentError("m"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::DeadlineExceededError("m"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::NotFoundError("m"), grpc::StatusCode::NOT_FOUND},
      {absl::AlreadyExistsError("m"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::PermissionDeniedError("m"), grpc::StatusCode::PERMISSION_DENIED},
      {absl::ResourceExhaustedError("m"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::FailedPreconditionError("m"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::AbortedError("m"), grpc::StatusCode::ABORTED},
      {absl::OutOfRangeError("m"), grpc::StatusCode::OUT_OF_RANGE},
      {absl::UnimplementedError("m"), grpc::StatusCode::UNIMPLEMENTED},
      {absl::InternalError("m"), grpc::StatusCode::INTERNAL},
      {absl::UnavailableError("m"), grpc::StatusCode::UNAVAILABLE},
      {absl::DataLossError("m"), grpc::StatusCode::DATA_LOSS},
      {absl::UnauthenticatedError("m"), grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& c : cases) {
    grpc::Status g = ToGrpcStatus(c.in);
    EXPECT_EQ(g.error_code(), c.out) << c.in;
    EXPECT_EQ(g.error_message(), "m") << c.in;
  }
}

TEST(StatusMapping, NonCanonicalCodeBecomesUnknown) {
  grpc::Status g = ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(42), "odd"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(g.error_message(), "odd");
}

}  // namespace
}  // namespace qrag::api
