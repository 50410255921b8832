#include "server/api/wire.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/slice.h"

namespace qrag::api {

absl::StatusOr<std::string> FlattenBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("could not read the request bytes");
  std::string out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

absl::Status ParseMessage(const std::string& wire, google::protobuf::MessageLite* out) {
  if (wire.size() <= static_cast<size_t>(INT32_MAX) && out->ParseFromString(wire)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("the request is not a valid serialized ", out->GetTypeName(),
                                                 " (a field has the wrong wire type, or a string field is not "
                                                 "UTF-8)"));
}

absl::Status SerializeMessage(const google::protobuf::MessageLite& message, grpc::ByteBuffer* out) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat("could not serialize the response ", message.GetTypeName()));
  }
  grpc::Slice slice(bytes);
  *out = grpc::ByteBuffer(&slice, 1);
  return absl::OkStatus();
}

}  // namespace qrag::api
