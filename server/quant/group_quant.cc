#include "server/quant/group_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/quant/int_format.h"

namespace qrag::quant {

absl::Status ParseGranularity(std::string_view name, GroupQuantOptions* o) {
  if (name == "tensor") {
    o->granularity = Granularity::kTensor;
    return absl::OkStatus();
  }
  if (name == "channel") {
    o->granularity = Granularity::kChannel;
    return absl::OkStatus();
  }
  if (name.substr(0, 6) == "vector") {
    int v = 32;
    if (name.size() > 6 && (!absl::SimpleAtoi(std::string(name.substr(6)), &v) || v < 1 || v > 4096)) {
      return absl::InvalidArgumentError(
          absl::StrCat("granularity '", std::string(name), "': the vector size must be an integer in 1..4096"));
    }
    o->granularity = Granularity::kVector;
    o->vector_size = v;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown granularity '", std::string(name),
                                                 "': use tensor, channel or vectorN (e.g. vector32)"));
}

std::string GranularityName(const GroupQuantOptions& o) {
  switch (o.granularity) {
    case Granularity::kTensor: return "tensor";
    case Granularity::kChannel: return "channel";
    case Granularity::kVector: return absl::StrCat("vector", o.vector_size);
  }
  return "?";
}

absl::StatusOr<GroupQuantResult> GroupQuantize(const float* x, int64_t rows, int64_t cols,
                                               const GroupQuantOptions& o) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("group quantization of an empty matrix [", rows, ", ", cols, "]"));
  }
  if (o.granularity == Granularity::kVector && o.vector_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("vector size must be positive, got ", o.vector_size));
  }
  if (o.scale_bits < 0 || o.scale_bits > 16) {
    return absl::InvalidArgumentError(absl::StrCat("scale bits must be in [0, 16], got ", o.scale_bits));
  }
  if (o.scale_bits > 0 && o.granularity != Granularity::kVector) {
    return absl::InvalidArgumentError("two-level (integer) scales need per-vector granularity");
  }
  // Groups as (row, begin, end) spans of a row; a tensor group spans all rows.
  const int64_t group_cols = o.granularity == Granularity::kVector ? o.vector_size : cols;
  const int64_t per_row = (cols + group_cols - 1) / group_cols;
  GroupQuantResult r;
  r.dequantized.resize(static_cast<size_t>(rows * cols));
  const double fmax = o.format.Max();

  auto apply = [&](const float* in, float* out, int64_t n, double scale) {
    for (int64_t i = 0; i < n; ++i) {
      out[i] = scale > 0 ? static_cast<float>(o.format.Round(in[i] / scale) * scale) : 0.0f;
    }
  };
  if (o.granularity == Granularity::kTensor) {
    QRAG_ASSIGN_OR_RETURN(double clip, ChooseClip(absl::MakeConstSpan(x, rows * cols), o.format, o.clip));
    r.clips.push_back(clip);
    apply(x, r.dequantized.data(), rows * cols, clip / fmax);
    return r;
  }
  std::vector<double> scales(static_cast<size_t>(per_row));
  for (int64_t row = 0; row < rows; ++row) {
    const float* xr = x + row * cols;
    for (int64_t g = 0; g < per_row; ++g) {
      const int64_t b = g * group_cols, e = std::min(cols, b + group_cols);
      QRAG_ASSIGN_OR_RETURN(double clip, ChooseClip(absl::MakeConstSpan(xr + b, e - b), o.format, o.clip));
      r.clips.push_back(clip);
      scales[g] = clip / fmax;
    }
    if (o.scale_bits > 0) {
      const double qmax = std::ldexp(1.0, o.scale_bits) - 1;
      const double gamma = *std::max_element(scales.begin(), scales.end()) / qmax;
      for (double& s : scales) {
        if (s == 0 || gamma == 0) {
          s = 0;
          continue;
        }
        s = std::clamp(RoundHalfEvenDouble(s / gamma), 1.0, qmax) * gamma;
      }
    }
    for (int64_t g = 0; g < per_row; ++g) {
      const int64_t b = g * group_cols, e = std::min(cols, b + group_cols);
      apply(xr + b, r.dequantized.data() + row * cols + b, e - b, scales[g]);
    }
  }
  return r;
}

QuantError MeasureError(const float* x, const float* xq, int64_t n) {
  QuantError q;
  double signal = 0, noise = 0, rel_sum = 0;
  int64_t nonzero = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(xq[i]) - x[i];
    signal += static_cast<double>(x[i]) * x[i];
    noise += d * d;
    if (x[i] != 0) {
      const double rel = std::fabs(d) / std::fabs(static_cast<double>(x[i]));
      q.worst_rel_error = std::max(q.worst_rel_error, rel);
      rel_sum += rel;
      ++nonzero;
    }
  }
  q.sqnr_db = noise == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(signal / noise);
  q.mean_rel_error = nonzero > 0 ? rel_sum / nonzero : 0;
  q.mse = n > 0 ? noise / n : 0;
  return q;
}

}  // namespace qrag::quant
