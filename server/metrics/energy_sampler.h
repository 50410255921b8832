// Reads an EnergyMeter on its own thread every `interval` and keeps the latest sample, so that nobody on a
// hot path ever waits for a device: the engine reads CumulativeJoules() (engine::EnergySource) at the start
// and end of every iteration and gets the last sample extrapolated with the last power figure.
//
// Joules: the meter's counter when it has one; otherwise the power readings integrated (trapezoid rule).
// Watts: the meter's power reading when it has one; otherwise d(joules)/dt between the last two samples.
#ifndef QRAG_SERVER_METRICS_ENERGY_SAMPLER_H_
#define QRAG_SERVER_METRICS_ENERGY_SAMPLER_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "server/engine/engine_observer.h"
#include "server/metrics/energy_meter.h"

namespace qrag::metrics {

struct EnergySample {
  absl::Time time;
  double joules = 0;  // cumulative, as the meter counts (or the integral of its power since the first sample)
  double watts = 0;
};

struct EnergySamplerOptions {
  absl::Duration interval = absl::Milliseconds(100);
  // Called on the sampler thread after each successful sample (e.g. to update gauges). May be empty.
  std::function<void(const EnergySample&)> on_sample;
  // Where the first failure of a read goes (one line; later failures of the same kind are not repeated).
  std::function<void(const std::string&)> log;
};

class EnergySampler final : public engine::EnergySource {
 public:
  // Takes a first sample on the calling thread, then starts the thread.
  EnergySampler(std::unique_ptr<EnergyMeter> meter, EnergySamplerOptions options);
  ~EnergySampler() override;  // stops and joins the thread

  // Latest sample extrapolated to now with its power (by at most two intervals), never decreasing between
  // calls. Thread-safe; never touches the device.
  double CumulativeJoules() override;
  EnergySample latest() const;
  const EnergyMeter& meter() const { return *meter_; }

  // Takes one sample now (the thread does this every interval). For tests; not thread-safe with itself.
  void SampleNow();

 private:
  void Loop();

  std::unique_ptr<EnergyMeter> meter_;
  const EnergySamplerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool have_sample_ = false;
  bool logged_failure_ = false;
  EnergySample last_;
  double returned_ = 0;  // largest value CumulativeJoules returned
  std::thread thread_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_ENERGY_SAMPLER_H_
