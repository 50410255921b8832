// `qrag-quant study`: quantize seeded synthetic samples with one scheme and report what it costs.
//
// The samples are laid out as a matrix [samples / cols, cols] (cols = the reduction dimension, for the
// channel and vector granularities; the sample count is rounded up to whole rows). The result's clip is in
// units of the sample standard deviation (the mean over groups for per-channel / per-vector scaling).
#ifndef QRAG_SERVER_QUANT_STUDY_H_
#define QRAG_SERVER_QUANT_STUDY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "server/quant/distributions.h"
#include "server/quant/group_quant.h"

namespace qrag::quant {

struct StudyOptions {
  Distribution distribution = Distribution::kGaussian;
  int dof = 3;  // Student-t
  int64_t samples = 1 << 16;
  uint64_t seed = 1;
  int64_t cols = 256;
  GroupQuantOptions quant;
};

struct StudyResult {
  int64_t samples = 0;
  double sample_sigma = 0;
  double clip_sigma = 0;   // mean clip / sample sigma
  QuantError error;
};

// Errors: those of SampleDistribution and GroupQuantize; INVALID_ARGUMENT for cols < 1.
absl::StatusOr<StudyResult> RunStudy(const StudyOptions& options);

// One JSON object with the options and the result (keys: distribution, format, bits, clip, granularity,
// scale_bits, samples, seed, sample_sigma, clip_sigma, sqnr_db, worst_rel_error, mean_rel_error).
std::string StudyJson(const StudyOptions& options, const StudyResult& result);

// Population standard deviation of x.
double StdDev(const float* x, int64_t n);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_STUDY_H_
