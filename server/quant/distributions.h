// Seeded samples of the distributions the quantization studies use: standard Gaussian, Laplace with unit
// variance (scale 1/sqrt(2)), and Student's t with `dof` degrees of freedom (unscaled; variance
// dof / (dof - 2)). Deterministic for a seed on every platform: a std::mt19937_64 stream (its output is
// fixed by the standard) turned into variates by explicit formulas (Box-Muller, inverse CDF, and
// Z / sqrt(chi^2_dof / dof) with chi^2 as a sum of dof squared Gaussians), not by std:: distributions,
// whose algorithms differ between standard libraries.
#ifndef QRAG_SERVER_QUANT_DISTRIBUTIONS_H_
#define QRAG_SERVER_QUANT_DISTRIBUTIONS_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace qrag::quant {

enum class Distribution { kGaussian, kLaplace, kStudentT };

const char* DistributionName(Distribution d);  // "gaussian", "laplace", "student-t"
absl::StatusOr<Distribution> ParseDistribution(std::string_view name);

// INVALID_ARGUMENT for n < 1 or a Student-t dof < 1 (dof is ignored by the others).
absl::StatusOr<std::vector<float>> SampleDistribution(Distribution d, int64_t n, uint64_t seed, int dof = 3);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_DISTRIBUTIONS_H_
