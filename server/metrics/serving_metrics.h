// qrag's Prometheus metrics for one served model: the engine's observer (engine_observer.h), the RAG hook
// (rag_observer.h) and the energy sampler's listener, over an injected prometheus::Registry.
//
// Names follow Prometheus conventions (qrag_ prefix, base units, _total on counters); every series carries
// model="<served name>" and precision="<serving precision>", except the tensor-ops counter and the ops-per-watt
// gauge whose precision label is the precision the ops ran in (a fp8 model does fp8 GEMMs and fp32
// attention). The full list is in README.md ("Metrics"). The energy series exist only when an energy meter
// was found (EnergyDomain given); without one they are absent, not zero.
//
// Thread safety: every method may be called from any thread; updates are atomic adds/sets on
// prometheus-cpp metrics whose handles were created up front, so the engine thread never waits for a scrape.
// The few lazily created series (an outcome or op precision seen for the first time) take the family's
// mutex once.
#ifndef QRAG_SERVER_METRICS_SERVING_METRICS_H_
#define QRAG_SERVER_METRICS_SERVING_METRICS_H_

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/engine/engine_observer.h"
#include "server/metrics/efficiency_window.h"
#include "server/metrics/energy_meter.h"
#include "server/metrics/energy_sampler.h"
#include "server/rag/rag_observer.h"

namespace qrag::metrics {

struct ServingMetricsOptions {
  std::string model;          // the served model's name (label "model")
  std::string precision;      // "fp32", "bf16", "fp8", "int8" (label "precision")
  // The energy meter's domain (qrag_gpu_* or qrag_cpu_* names); unset: no meter, no energy series.
  std::optional<EnergyDomain> energy_domain;
  absl::Duration efficiency_window = absl::Seconds(30);  // for qrag_ops_per_watt and qrag_tokens_per_joule
};

class ServingMetrics final : public engine::EngineObserver, public rag::RagObserver {
 public:
  ServingMetrics(std::shared_ptr<prometheus::Registry> registry, const ServingMetricsOptions& options);
  ~ServingMetrics() override;

  // engine::EngineObserver
  void OnIteration(const engine::IterationFacts& facts) override;
  void OnRequestFinished(const absl::Status& status, const engine::Usage& usage,
                         const engine::Timings& timings) override;
  void OnRequestRejected(const absl::Status& status) override;
  void OnEngineStats(const engine::EngineStats& stats) override;

  // RagObserver
  void OnEmbed(double seconds) override;
  void OnSearch(double seconds) override;
  void OnIndexLag(double seconds) override;
  void OnChangeApplied(double seconds) override;

  // EnergySamplerOptions::on_sample: power and energy series, then the sliding-window efficiency gauges.
  void OnEnergySample(const EnergySample& sample);

  // The outcome label of a status: "ok" or the lower-case gRPC code name ("deadline_exceeded").
  static std::string OutcomeLabel(const absl::Status& status);

 private:
  struct Energy;
  prometheus::Counter& RequestsWithOutcome(const std::string& outcome);
  prometheus::Counter& OpsCounter(int precision);

  std::shared_ptr<prometheus::Registry> registry_;
  const ServingMetricsOptions options_;

  prometheus::Family<prometheus::Counter>* requests_family_;
  prometheus::Family<prometheus::Counter>* ops_family_;
  std::mutex lazy_mu_;  // guards the lazily created series below (their pointers)
  std::array<std::atomic<prometheus::Counter*>, model::kNumPrecisions> ops_{};
  std::atomic<prometheus::Counter*> requests_ok_{nullptr};

  prometheus::Histogram *queue_time_, *ttft_, *itl_, *e2e_, *prefill_step_, *decode_step_, *rag_embed_,
      *rag_search_, *rag_change_apply_, *prompt_tokens_per_request_, *generated_tokens_per_request_;
  prometheus::Counter *prompt_tokens_, *generated_tokens_, *prefix_queried_, *prefix_hit_;
  prometheus::Gauge *running_, *waiting_, *kv_used_, *kv_free_, *kv_cached_, *batch_size_, *rag_index_lag_;

  // Cumulative counts the efficiency window reads on the sampler thread.
  std::array<std::atomic<int64_t>, model::kNumPrecisions> ops_total_{};
  std::atomic<int64_t> generated_total_{0};
  std::unique_ptr<Energy> energy_;  // null without a meter
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_SERVING_METRICS_H_
