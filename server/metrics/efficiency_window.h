// The derived efficiency figures over a sliding window: ops per watt (= ops/s divided by W, i.e. ops per
// joule) by precision and in total, and generated tokens per joule. Pure arithmetic on cumulative counts,
// fed by the energy sampler's thread; not thread-safe (one writer).
#ifndef QRAG_SERVER_METRICS_EFFICIENCY_WINDOW_H_
#define QRAG_SERVER_METRICS_EFFICIENCY_WINDOW_H_

#include <array>
#include <cstdint>
#include <deque>

#include "absl/time/time.h"
#include "server/model/forward_stats.h"

namespace qrag::metrics {

// Cumulative counts at one moment.
struct EfficiencyPoint {
  absl::Time time;
  double joules = 0;
  int64_t generated_tokens = 0;
  std::array<int64_t, model::kNumPrecisions> ops{};  // by backend::Precision
};

struct EfficiencyFigures {
  bool valid = false;      // false: fewer than two points or no energy in the window
  double seconds = 0;      // span of the window actually covered
  double joules = 0;
  std::array<double, model::kNumPrecisions> ops_per_joule{};
  double total_ops_per_joule = 0;
  double tokens_per_joule = 0;
};

class EfficiencyWindow {
 public:
  explicit EfficiencyWindow(absl::Duration window) : window_(window) {}
  // Points must come in time order. Keeps the newest point at or before (newest - window) as the base.
  void Add(const EfficiencyPoint& point);
  // Differences between the newest point and the base.
  EfficiencyFigures Compute() const;

 private:
  absl::Duration window_;
  std::deque<EfficiencyPoint> points_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_EFFICIENCY_WINDOW_H_
