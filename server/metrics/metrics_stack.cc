#include "server/metrics/metrics_stack.h"

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::metrics {

absl::StatusOr<std::unique_ptr<MetricsStack>> MetricsStack::Start(const MetricsStackOptions& options) {
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  if (options.sample_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("energy sample interval must be > 0");
  }
  QRAG_ASSIGN_OR_RETURN(EnergyMeterChoice choice, OpenEnergyMeter(options.energy));
  std::unique_ptr<MetricsStack> stack(new MetricsStack());
  stack->registry_ = std::make_shared<prometheus::Registry>();
  ServingMetricsOptions m;
  m.model = options.model;
  m.precision = options.precision;
  m.efficiency_window = options.efficiency_window;
  if (choice.meter != nullptr) m.energy_domain = choice.meter->domain();
  stack->serving_ = std::make_unique<ServingMetrics>(stack->registry_, m);
  if (choice.meter != nullptr) {
    log(absl::StrCat("energy meter: ", choice.meter->description(), ", sampled every ",
                     absl::FormatDuration(options.sample_interval)));
    EnergySamplerOptions s;
    s.interval = options.sample_interval;
    ServingMetrics* serving = stack->serving_.get();
    s.on_sample = [serving](const EnergySample& sample) { serving->OnEnergySample(sample); };
    s.log = options.log;
    stack->sampler_ = std::make_unique<EnergySampler>(std::move(choice.meter), std::move(s));
  } else {
    log(absl::StrCat("energy meter: none (", choice.reason, "); energy metrics absent, usage energy_joules 0"));
  }
  if (!options.listen_address.empty()) {
    QRAG_ASSIGN_OR_RETURN(stack->exposer_, MetricsExposer::Start({.listen_address = options.listen_address},
                                                                 stack->registry_));
  }
  return stack;
}

MetricsStack::~MetricsStack() {
  exposer_.reset();
  sampler_.reset();
}

}  // namespace qrag::metrics
