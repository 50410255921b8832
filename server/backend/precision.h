// The numeric schemes qrag serves (`--quant`), shared by every backend.
#ifndef QRAG_SERVER_BACKEND_PRECISION_H_
#define QRAG_SERVER_BACKEND_PRECISION_H_

#include <string_view>

#include "absl/status/statusor.h"

namespace qrag::backend {

// How a linear layer's weights are stored and how its GEMM runs. Activations between ops stay fp32.
//  - kF32:  fp32 weights, fp32 GEMM.
//  - kBF16: bf16 weights (round to nearest even); GEMM inputs rounded to bf16, fp32 accumulation.
//  - kFP8:  OCP FP8 E4M3 weights with one fp32 scale per output channel; activations quantized to E4M3 per
//           token dynamically (scale = amax / 448); fp32 accumulation of exact products.
//  - kInt8: W8A8 symmetric int8, per-channel weight scales x per-token activation scales (amax / 127);
//           int32 accumulation.
//  - kW4:   weight-only 4-bit (quant/w4.h): per vector of 32 weights along k one fp32 scale and, on the
//           asymmetric grid (the default; llama.cpp's Q4_1 grid), one fp32 minimum (the symmetric grid:
//           INT4 codes, OCTAV clip, no minimum); weights dequantized to fp32 inside the GEMM, fp32
//           activations. CPU backend only so far.
enum class Precision { kF32, kBF16, kFP8, kInt8, kW4 };

inline constexpr int kNumPrecisions = 5;
inline constexpr Precision kAllPrecisions[] = {Precision::kF32, Precision::kBF16, Precision::kFP8,
                                               Precision::kInt8, Precision::kW4};

// "fp32", "bf16", "fp8", "int8", "w4".
const char* PrecisionName(Precision p);
// Accepts the names above; INVALID_ARGUMENT listing them otherwise.
absl::StatusOr<Precision> ParsePrecision(std::string_view name);
// Bytes one weight element occupies (scales not counted).
double PrecisionWeightBytes(Precision p);

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_PRECISION_H_
