#include "server/metrics/efficiency_window.h"

namespace qrag::metrics {

void EfficiencyWindow::Add(const EfficiencyPoint& point) {
  points_.push_back(point);
  const absl::Time start = point.time - window_;
  // Drop the oldest while the next one still covers the window's start.
  while (points_.size() > 2 && points_[1].time <= start) points_.pop_front();
}

EfficiencyFigures EfficiencyWindow::Compute() const {
  EfficiencyFigures f;
  if (points_.size() < 2) return f;
  const EfficiencyPoint& a = points_.front();
  const EfficiencyPoint& b = points_.back();
  f.seconds = absl::ToDoubleSeconds(b.time - a.time);
  f.joules = b.joules - a.joules;
  if (!(f.joules > 0) || !(f.seconds > 0)) return f;
  f.valid = true;
  int64_t total = 0;
  for (int p = 0; p < model::kNumPrecisions; ++p) {
    const int64_t ops = b.ops[p] - a.ops[p];
    total += ops;
    f.ops_per_joule[p] = static_cast<double>(ops) / f.joules;
  }
  f.total_ops_per_joule = static_cast<double>(total) / f.joules;
  f.tokens_per_joule = static_cast<double>(b.generated_tokens - a.generated_tokens) / f.joules;
  return f;
}

}  // namespace qrag::metrics
