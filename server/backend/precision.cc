#include "server/backend/precision.h"

#include "absl/strings/str_cat.h"

namespace qrag::backend {

const char* PrecisionName(Precision p) {
  switch (p) {
    case Precision::kF32: return "fp32";
    case Precision::kBF16: return "bf16";
    case Precision::kFP8: return "fp8";
    case Precision::kInt8: return "int8";
    case Precision::kW4: return "w4";
  }
  return "?";
}

absl::StatusOr<Precision> ParsePrecision(std::string_view name) {
  for (Precision p : kAllPrecisions) {
    if (name == PrecisionName(p)) return p;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision '", std::string(name), "': use one of fp32, bf16, fp8, int8, w4"));
}

double PrecisionWeightBytes(Precision p) {
  switch (p) {
    case Precision::kF32: return 4;
    case Precision::kBF16: return 2;
    case Precision::kFP8: return 1;
    case Precision::kInt8: return 1;
    case Precision::kW4: return 0.5;
  }
  return 4;
}

}  // namespace qrag::backend
