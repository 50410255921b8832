// The bytes side of the callback services. Every qrag.v1 method takes its request as raw bytes and parses
// it here, so that bytes that are not the request message are INVALID_ARGUMENT naming the message: gRPC's own
// deserialization failure is UNIMPLEMENTED (callback methods) or INTERNAL (synchronous ones), codes that mean
// something else to a client.
#ifndef QRAG_SERVER_API_WIRE_H_
#define QRAG_SERVER_API_WIRE_H_

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"

namespace qrag::api {

// The buffer's bytes in one string. INVALID_ARGUMENT when gRPC cannot hand them over.
absl::StatusOr<std::string> FlattenBytes(const grpc::ByteBuffer& buffer);

// Parses `wire` into `out`; INVALID_ARGUMENT "the request is not a valid serialized <type> (...)" otherwise.
absl::Status ParseMessage(const std::string& wire, google::protobuf::MessageLite* out);

template <typename Message>
absl::StatusOr<Message> ParseRequest(const grpc::ByteBuffer& buffer) {
  absl::StatusOr<std::string> wire = FlattenBytes(buffer);
  if (!wire.ok()) return wire.status();
  Message m;
  if (absl::Status s = ParseMessage(*wire, &m); !s.ok()) return s;
  return m;
}

// Serializes `message` into `out`. INTERNAL when it cannot (a bug: messages built here are well formed).
absl::Status SerializeMessage(const google::protobuf::MessageLite& message, grpc::ByteBuffer* out);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_WIRE_H_
