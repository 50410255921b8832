#include "server/quant/distributions.h"

#include <cmath>
#include <numbers>
#include <random>

#include "absl/strings/str_cat.h"

namespace qrag::quant {

const char* DistributionName(Distribution d) {
  switch (d) {
    case Distribution::kGaussian: return "gaussian";
    case Distribution::kLaplace: return "laplace";
    case Distribution::kStudentT: return "student-t";
  }
  return "?";
}

absl::StatusOr<Distribution> ParseDistribution(std::string_view name) {
  for (Distribution d : {Distribution::kGaussian, Distribution::kLaplace, Distribution::kStudentT}) {
    if (name == DistributionName(d)) return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown distribution '", std::string(name), "': use gaussian, laplace or student-t"));
}

absl::StatusOr<std::vector<float>> SampleDistribution(Distribution d, int64_t n, uint64_t seed, int dof) {
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("sample count must be positive, got ", n));
  if (d == Distribution::kStudentT && dof < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Student-t degrees of freedom must be >= 1, got ", dof));
  }
  std::mt19937_64 rng(seed);
  // Uniform in (0, 1): 53 random bits, offset by half a step so that 0 never occurs.
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53; };
  auto gaussian = [&] {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
  };
  std::vector<float> out(static_cast<size_t>(n));
  for (float& v : out) {
    switch (d) {
      case Distribution::kGaussian: v = static_cast<float>(gaussian()); break;
      case Distribution::kLaplace: {
        const double u = uniform() - 0.5;
        v = static_cast<float>(-(u < 0 ? -1.0 : 1.0) * std::log(1 - 2 * std::fabs(u)) / std::numbers::sqrt2);
        break;
      }
      case Distribution::kStudentT: {
        const double z = gaussian();
        double chi2 = 0;
        for (int i = 0; i < dof; ++i) {
          const double g = gaussian();
          chi2 += g * g;
        }
        v = static_cast<float>(z / std::sqrt(chi2 / dof));
        break;
      }
    }
  }
  return out;
}

}  // namespace qrag::quant
