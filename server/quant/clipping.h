// Choosing the clipping threshold s of a scaled quantizer (values beyond +-s saturate; the scale is
// s / format max). Four methods:
//  - max:        s = max |x| (no clipping error, largest rounding error);
//  - percentile: s = the p-th percentile of |x| (nearest-rank);
//  - MSE sweep:  s minimizing the mean squared quantization error over a dense grid of candidates in
//                (0, max |x|], refined once around the best grid point (for integer formats and more than
//                4096 values the error is evaluated from sorted magnitudes and prefix sums, exact except
//                for values lying exactly on a rounding tie);
//  - OCTAV:      the Newton fixed point of Sakr et al., "Optimal Clipping and Magnitude-aware
//                Differentiation for Improved Quantization-aware Training", ICML 2022, eq. (5):
//                    s_{n+1} = sum |x| 1{|x| > s_n} / ( (4^-B / 3) #{0 < |x| <= s_n} + #{|x| > s_n} ),
//                which zeroes the derivative of their MSE model (clipping error + B-bit uniform rounding
//                noise 4^-B s^2 / 3 per unclipped element). Started from s_0 = rms(x) and iterated to a
//                relative change below 1e-9 (at most 100 iterations).
// OCTAV models uniform (integer) quantization; the other methods work with any ScalarFormat.
#ifndef QRAG_SERVER_QUANT_CLIPPING_H_
#define QRAG_SERVER_QUANT_CLIPPING_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/quant/scalar_format.h"

namespace qrag::quant {

enum class ClipMethod { kMax, kPercentile, kMse, kOctav };

const char* ClipMethodName(ClipMethod m);  // "max", "percentile", "mse", "octav"
absl::StatusOr<ClipMethod> ParseClipMethod(std::string_view name);

struct ClipOptions {
  ClipMethod method = ClipMethod::kMax;
  double percentile = 99.9;   // kPercentile, in (0, 100]
  int sweep_points = 200;     // kMse: grid points over (0, max]; then as many again between the best's neighbours
};

double MaxAbs(absl::Span<const float> x);
double OctavClip(absl::Span<const float> x, int bits);
double PercentileClip(absl::Span<const float> x, double percentile);
double MseSweepClip(absl::Span<const float> x, const ScalarFormat& format, int points);

// Sum of squared errors of quantizing x with clip s in `format` (scale = s / format.Max()).
double QuantizationSse(absl::Span<const float> x, const ScalarFormat& format, double clip);

// The clip of `x` by `options`. INVALID_ARGUMENT for OCTAV with a non-integer format or a percentile
// outside (0, 100]. A group of zeros (or an empty one) gets clip 0.
absl::StatusOr<double> ChooseClip(absl::Span<const float> x, const ScalarFormat& format, const ClipOptions& options);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_CLIPPING_H_
