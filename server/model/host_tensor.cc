// HostTensor and LoadedModel accessors. LoadCheckpoint lives in checkpoint.cc.
#include "server/model/host_tensor.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/quant/bf16.h"

namespace qrag::model {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Widens `n` 16-bit elements at `src` (any alignment) with `convert`.
template <typename Convert>
void Widen16(const uint8_t* src, int64_t n, float* dst, Convert convert) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, sizeof(v));
    dst[i] = convert(v);
  }
}

absl::StatusOr<const HostTensor*> Lookup(const LoadedModel& model, const std::string& name,
                                         const std::vector<int64_t>& shape, bool optional) {
  auto it = model.tensors.find(name);
  if (it == model.tensors.end()) {
    if (optional) return nullptr;
    return absl::NotFoundError(absl::StrCat(model.source, ": tensor '", name, "' not found (expected shape ",
                                            ShapeString(shape), "; the checkpoint has ",
                                            model.tensors.size(), " tensors)"));
  }
  const HostTensor& t = it->second;
  if (t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.file.empty() ? model.source : t.file, ": tensor '", name, "' has shape ", ShapeString(t.shape),
        ", expected ", ShapeString(shape), " (from the config of ", model.source, ")"));
  }
  return &t;
}

}  // namespace

const char* HostDTypeName(HostDType dtype) {
  switch (dtype) {
    case HostDType::kF32: return "f32";
    case HostDType::kF16: return "f16";
    case HostDType::kBF16: return "bf16";
  }
  return "?";
}

size_t HostDTypeSize(HostDType dtype) {
  switch (dtype) {
    case HostDType::kF32: return 4;
    case HostDType::kF16: return 2;
    case HostDType::kBF16: return 2;
  }
  return 0;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void HostTensor::ToFloat(float* dst) const {
  const int64_t n = numel();
  if (n == 0) return;
  switch (dtype) {
    case HostDType::kF32:
      std::memcpy(dst, data, static_cast<size_t>(n) * sizeof(float));
      break;
    case HostDType::kF16:
      Widen16(data, n, dst, quant::HalfToFloat);
      break;
    case HostDType::kBF16:
      Widen16(data, n, dst, quant::Bf16ToFloat);
      break;
  }
}

std::vector<float> HostTensor::ToFloatVector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  ToFloat(out.data());
  return out;
}

absl::StatusOr<const HostTensor*> LoadedModel::Get(const std::string& name,
                                                   const std::vector<int64_t>& shape) const {
  return Lookup(*this, name, shape, /*optional=*/false);
}

absl::StatusOr<const HostTensor*> LoadedModel::GetOptional(const std::string& name,
                                                           const std::vector<int64_t>& shape) const {
  return Lookup(*this, name, shape, /*optional=*/true);
}

}  // namespace qrag::model
