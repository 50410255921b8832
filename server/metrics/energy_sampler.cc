#include "server/metrics/energy_sampler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace qrag::metrics {

EnergySampler::EnergySampler(std::unique_ptr<EnergyMeter> meter, EnergySamplerOptions options)
    : meter_(std::move(meter)), options_(std::move(options)) {
  SampleNow();
  thread_ = std::thread([this] { Loop(); });
}

EnergySampler::~EnergySampler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EnergySampler::SampleNow() {
  absl::StatusOr<EnergyReading> r = meter_->Read();
  const absl::Time now = absl::Now();
  if (!r.ok()) {
    bool log = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      log = !logged_failure_;
      logged_failure_ = true;
    }
    if (log && options_.log) {
      options_.log(absl::StrCat("energy meter read failed (", meter_->description(), "): ", r.status().message(),
                                "; retrying every ", absl::FormatDuration(options_.interval),
                                ", further failures not logged"));
    }
    return;
  }
  EnergySample s;
  s.time = now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const EnergySample prev = last_;
    const bool had = have_sample_;
    const double dt = had ? absl::ToDoubleSeconds(now - prev.time) : 0;
    if (r->joules.has_value()) {
      s.joules = *r->joules;
    } else {
      // Power only: integrate (trapezoid rule).
      s.joules = had ? prev.joules + 0.5 * (prev.watts + r->watts.value_or(0)) * dt : 0;
    }
    if (r->watts.has_value()) {
      s.watts = *r->watts;
    } else {
      s.watts = had && dt > 0 ? std::max(0.0, (s.joules - prev.joules) / dt) : 0;
    }
    s.joules = std::max(s.joules, had ? prev.joules : 0.0);
    last_ = s;
    have_sample_ = true;
  }
  if (options_.on_sample) options_.on_sample(s);
}

double EnergySampler::CumulativeJoules() {
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  const double horizon = 2 * absl::ToDoubleSeconds(options_.interval);
  const double dt = std::clamp(absl::ToDoubleSeconds(now - last_.time), 0.0, horizon);
  returned_ = std::max(returned_, last_.joules + last_.watts * dt);
  return returned_;
}

EnergySample EnergySampler::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

void EnergySampler::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.interval), [&] { return stop_; })) return;
    }
    SampleNow();
  }
}

}  // namespace qrag::metrics
