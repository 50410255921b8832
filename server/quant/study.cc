#include "server/quant/study.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/status.h"

namespace qrag::quant {

double StdDev(const float* x, int64_t n) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  return std::sqrt(var / n);
}

absl::StatusOr<StudyResult> RunStudy(const StudyOptions& o) {
  if (o.cols < 1) return absl::InvalidArgumentError(absl::StrCat("cols must be positive, got ", o.cols));
  if (o.samples < 1) return absl::InvalidArgumentError(absl::StrCat("sample count must be positive, got ", o.samples));
  const int64_t rows = (o.samples + o.cols - 1) / o.cols;
  QRAG_ASSIGN_OR_RETURN(std::vector<float> x, SampleDistribution(o.distribution, rows * o.cols, o.seed, o.dof));
  QRAG_ASSIGN_OR_RETURN(GroupQuantResult q, GroupQuantize(x.data(), rows, o.cols, o.quant));
  StudyResult r;
  r.samples = rows * o.cols;
  r.sample_sigma = StdDev(x.data(), r.samples);
  double clip_sum = 0;
  for (double c : q.clips) clip_sum += c;
  r.clip_sigma = r.sample_sigma > 0 ? clip_sum / q.clips.size() / r.sample_sigma : 0;
  r.error = MeasureError(x.data(), q.dequantized.data(), r.samples);
  return r;
}

std::string StudyJson(const StudyOptions& o, const StudyResult& r) {
  nlohmann::ordered_json j;
  j["distribution"] = DistributionName(o.distribution);
  if (o.distribution == Distribution::kStudentT) j["dof"] = o.dof;
  j["format"] = o.quant.format.Name();
  j["bits"] = o.quant.format.TotalBits();
  j["clip"] = ClipMethodName(o.quant.clip.method);
  if (o.quant.clip.method == ClipMethod::kPercentile) j["percentile"] = o.quant.clip.percentile;
  j["granularity"] = GranularityName(o.quant);
  j["scale_bits"] = o.quant.scale_bits;
  j["samples"] = r.samples;
  j["seed"] = o.seed;
  j["sample_sigma"] = r.sample_sigma;
  j["clip_sigma"] = r.clip_sigma;
  j["sqnr_db"] = std::isfinite(r.error.sqnr_db) ? nlohmann::ordered_json(r.error.sqnr_db) : nlohmann::ordered_json("inf");
  j["worst_rel_error"] = r.error.worst_rel_error;
  j["mean_rel_error"] = r.error.mean_rel_error;
  return j.dump();
}

}  // namespace qrag::quant
