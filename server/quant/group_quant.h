// Scaled quantization of a matrix x[rows, cols] (cols = the reduction dimension, as a linear layer's
// weight [out, in]) at a chosen granularity, returning the dequantized ("fake-quantized") values that the
// studies measure and the clips chosen.
//
// Granularity: one scale per tensor, per channel (row), or per vector of `vector_size` consecutive
// elements of a row (the last vector of a row may be shorter). Each group gets its own clip by
// ClipOptions (clipping.h) and scale = clip / format.Max(); x' = scale * format.Round(x / scale).
//
// Two-level per-vector scales (VS-Quant, Dai et al., MLSys 2021): with scale_bits = M > 0 each vector's
// fp scale s_v is itself quantized to an unsigned M-bit integer times one fp32 scale per channel:
//   gamma_c = max_v s_v / (2^M - 1),  q_v = round(s_v / gamma_c) clamped to [1, 2^M - 1] (0 for an all-zero
//   vector),  effective scale = q_v * gamma_c.
#ifndef QRAG_SERVER_QUANT_GROUP_QUANT_H_
#define QRAG_SERVER_QUANT_GROUP_QUANT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/quant/clipping.h"
#include "server/quant/scalar_format.h"

namespace qrag::quant {

enum class Granularity { kTensor, kChannel, kVector };

struct GroupQuantOptions {
  ScalarFormat format = ScalarFormat::Int(4);
  Granularity granularity = Granularity::kTensor;
  int vector_size = 32;  // kVector
  ClipOptions clip;
  int scale_bits = 0;    // kVector: 0 = fp32 per-vector scales; M > 0 = VS-Quant two-level (M-bit int x fp32)
};

// "tensor", "channel", "vectorN" (N = 1..4096; "vector" alone is vector32). Fills granularity/vector_size.
absl::Status ParseGranularity(std::string_view name, GroupQuantOptions* options);
std::string GranularityName(const GroupQuantOptions& options);

struct GroupQuantResult {
  std::vector<float> dequantized;  // [rows * cols]
  std::vector<double> clips;       // one per group, in group order (row-major)
};

// INVALID_ARGUMENT for rows/cols <= 0, vector_size <= 0, scale_bits outside [0, 16] or two-level scales with
// a granularity other than kVector, and for ChooseClip's errors.
absl::StatusOr<GroupQuantResult> GroupQuantize(const float* x, int64_t rows, int64_t cols,
                                               const GroupQuantOptions& options);

// Error statistics of x' against x.
struct QuantError {
  double sqnr_db = 0;           // 10 log10(sum x^2 / sum (x' - x)^2); +inf when exact
  double worst_rel_error = 0;   // max |x' - x| / |x| over x != 0
  double mean_rel_error = 0;    // mean of the same
  double mse = 0;
};
QuantError MeasureError(const float* x, const float* xq, int64_t n);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_GROUP_QUANT_H_
