// Everything qrag-server runs for metrics, assembled in one place: the registry (owned here and injected
// into the rest, no global), the ServingMetrics observer, the energy meter with its sampler thread, and the
// optional /metrics endpoint. The engine gets hooks() (observer + energy source).
#ifndef QRAG_SERVER_METRICS_METRICS_STACK_H_
#define QRAG_SERVER_METRICS_METRICS_STACK_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "server/engine/engine_observer.h"
#include "server/metrics/energy_meter.h"
#include "server/metrics/energy_sampler.h"
#include "server/metrics/metrics_exposer.h"
#include "server/metrics/serving_metrics.h"

namespace qrag::metrics {

struct MetricsStackOptions {
  std::string model;                  // label "model"
  std::string precision;              // label "precision"
  std::string listen_address;         // empty: no /metrics endpoint (energy still reaches responses)
  EnergyMeterOptions energy;
  absl::Duration sample_interval = absl::Milliseconds(100);
  absl::Duration efficiency_window = absl::Seconds(30);
  std::function<void(const std::string&)> log;  // one line per call
};

class MetricsStack {
 public:
  // Opens the energy meter (logging the one chosen, or why there is none, once), builds the metrics and
  // starts the endpoint. Errors: an explicitly requested meter that cannot be opened (its status), a bad or
  // unbindable listen address (INVALID_ARGUMENT / UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<MetricsStack>> Start(const MetricsStackOptions& options);
  ~MetricsStack();  // stops the sampler before the metrics it feeds

  engine::EngineHooks hooks() { return {serving_.get(), sampler_.get()}; }
  ServingMetrics& serving() { return *serving_; }
  rag::RagObserver& rag() { return *serving_; }
  prometheus::Registry& registry() { return *registry_; }
  // The bound "HOST:PORT" of /metrics, or empty without an endpoint.
  std::string address() const { return exposer_ != nullptr ? exposer_->address() : std::string(); }

 private:
  MetricsStack() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServingMetrics> serving_;
  std::unique_ptr<EnergySampler> sampler_;  // null without a meter
  std::unique_ptr<MetricsExposer> exposer_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_METRICS_STACK_H_
