#include "server/quant/clipping.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/quant/int_format.h"

namespace qrag::quant {

const char* ClipMethodName(ClipMethod m) {
  switch (m) {
    case ClipMethod::kMax: return "max";
    case ClipMethod::kPercentile: return "percentile";
    case ClipMethod::kMse: return "mse";
    case ClipMethod::kOctav: return "octav";
  }
  return "?";
}

absl::StatusOr<ClipMethod> ParseClipMethod(std::string_view name) {
  for (ClipMethod m : {ClipMethod::kMax, ClipMethod::kPercentile, ClipMethod::kMse, ClipMethod::kOctav}) {
    if (name == ClipMethodName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown clipping method '", std::string(name), "': use max, percentile, mse or octav"));
}

double MaxAbs(absl::Span<const float> x) {
  double m = 0;
  for (float v : x) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

double OctavClip(absl::Span<const float> x, int bits) {
  const double amax = MaxAbs(x);
  if (amax == 0) return 0;
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double noise = std::pow(4.0, -bits) / 3.0;
  double s = std::sqrt(ss / x.size());
  for (int it = 0; it < 100; ++it) {
    double sum_clipped = 0, n_clipped = 0, n_inside = 0;
    for (float v : x) {
      const double a = std::fabs(v);
      if (a > s) {
        sum_clipped += a;
        n_clipped += 1;
      } else if (a > 0) {
        n_inside += 1;
      }
    }
    // Nothing beyond s: s >= max |x| (all magnitudes equal); the best clip is then max |x| itself.
    if (n_clipped == 0) return amax;
    const double next = sum_clipped / (noise * n_inside + n_clipped);
    const bool done = std::fabs(next - s) <= 1e-9 * s;
    s = next;
    if (done) break;
  }
  return std::min(s, amax);
}

double PercentileClip(absl::Span<const float> x, double percentile) {
  if (x.empty()) return 0;
  std::vector<float> a(x.size());
  for (size_t i = 0; i < x.size(); ++i) a[i] = std::fabs(x[i]);
  // Nearest rank: the ceil(p/100 * n)-th smallest magnitude.
  // (The 1e-9 keeps p * n that is an integer up to fp rounding, e.g. 99.9% of 1000, from rounding up.)
  size_t rank = static_cast<size_t>(std::ceil(percentile / 100.0 * a.size() - 1e-9));
  rank = std::clamp<size_t>(rank, 1, a.size());
  std::nth_element(a.begin(), a.begin() + (rank - 1), a.end());
  return a[rank - 1];
}

double QuantizationSse(absl::Span<const float> x, const ScalarFormat& format, double clip) {
  if (clip <= 0) {
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    return ss;
  }
  const double scale = clip / format.Max();
  double sse = 0;
  for (float v : x) {
    const double e = format.Round(v / scale) * scale - v;
    sse += e * e;
  }
  return sse;
}

namespace {

// Sum of squared errors of symmetric INT quantization for many candidate clips, from the sorted magnitudes
// and their prefix sums: level j (step d) takes the magnitudes in [(j - 1/2) d, (j + 1/2) d), the top level
// everything above; a level's error is sum a^2 - 2 j d sum a + count (j d)^2. O(qmax log n) per candidate
// instead of O(n). Exact ties between two levels round up here (the format rounds them to even); that
// changes the sum only for values exactly on a tie.
class SortedIntSse {
 public:
  SortedIntSse(absl::Span<const float> x, int bits) : qmax_(IntMax(bits)) {
    a_.reserve(x.size());
    for (float v : x) a_.push_back(std::fabs(static_cast<double>(v)));
    std::sort(a_.begin(), a_.end());
    s1_.assign(a_.size() + 1, 0);
    s2_.assign(a_.size() + 1, 0);
    for (size_t i = 0; i < a_.size(); ++i) {
      s1_[i + 1] = s1_[i] + a_[i];
      s2_[i + 1] = s2_[i] + a_[i] * a_[i];
    }
  }

  double Sse(double clip) const {
    const double d = clip / qmax_;
    double sse = 0;
    size_t begin = 0;
    for (int j = 0; j <= qmax_; ++j) {
      const size_t end = j == qmax_ ? a_.size()
                                    : static_cast<size_t>(std::lower_bound(a_.begin() + begin, a_.end(), (j + 0.5) * d) -
                                                          a_.begin());
      const double level = j * d, count = static_cast<double>(end - begin);
      sse += (s2_[end] - s2_[begin]) - 2 * level * (s1_[end] - s1_[begin]) + count * level * level;
      begin = end;
    }
    return std::max(sse, 0.0);
  }

 private:
  int qmax_;
  std::vector<double> a_, s1_, s2_;
};

}  // namespace

double MseSweepClip(absl::Span<const float> x, const ScalarFormat& format, int points) {
  const double amax = MaxAbs(x);
  if (amax == 0) return 0;
  points = std::max(points, 2);
  // Integer formats on large inputs: the sorted-prefix-sum objective; otherwise quantize and measure.
  std::optional<SortedIntSse> fast;
  if (format.is_int() && x.size() > 4096) fast.emplace(x, format.bits);
  auto sse = [&](double c) { return fast ? fast->Sse(c) : QuantizationSse(x, format, c); };
  double best = amax, best_sse = sse(amax);
  int best_i = points;
  for (int i = 1; i < points; ++i) {
    const double c = amax * i / points;
    const double e = sse(c);
    if (e < best_sse) best = c, best_sse = e, best_i = i;
  }
  // Refine between the neighbours of the best grid point.
  const double lo = amax * (best_i - 1) / points, hi = amax * std::min(best_i + 1, points) / points;
  for (int i = 1; i < points; ++i) {
    const double c = lo + (hi - lo) * i / points;
    const double e = sse(c);
    if (e < best_sse) best = c, best_sse = e;
  }
  return best;
}

absl::StatusOr<double> ChooseClip(absl::Span<const float> x, const ScalarFormat& format, const ClipOptions& o) {
  switch (o.method) {
    case ClipMethod::kMax: return MaxAbs(x);
    case ClipMethod::kPercentile:
      if (!(o.percentile > 0 && o.percentile <= 100)) {
        return absl::InvalidArgumentError(absl::StrCat("percentile must be in (0, 100], got ", o.percentile));
      }
      return PercentileClip(x, o.percentile);
    case ClipMethod::kMse: return MseSweepClip(x, format, o.sweep_points);
    case ClipMethod::kOctav:
      if (!format.is_int()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "OCTAV clipping models uniform integer quantization; format ", format.Name(),
            " is not an integer format (use max, percentile or mse)"));
      }
      return OctavClip(x, format.bits);
  }
  return MaxAbs(x);
}

}  // namespace qrag::quant
