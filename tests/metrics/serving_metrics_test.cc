// ServingMetrics on a real prometheus::Registry: facts from the engine in, collected series out.
#include "server/metrics/serving_metrics.h"

#include <map>

#include "server/engine/engine.h"
#include "tests/test_util.h"

namespace qrag::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;

// The collected series of a registry, by family name; a series by its labels (model and precision implied).
class Collected {
 public:
  explicit Collected(const prometheus::Registry& r) {
    for (MetricFamily& f : r.Collect()) families_[f.name] = std::move(f);
  }
  bool Has(const std::string& name) const { return families_.count(name) > 0; }
  const ClientMetric* Find(const std::string& name, std::map<std::string, std::string> labels = {}) const {
    auto it = families_.find(name);
    if (it == families_.end()) return nullptr;
    for (const ClientMetric& m : it->second.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found |= l.name == k && l.value == v;
        match &= found;
      }
      if (match) return &m;
    }
    return nullptr;
  }
  double Counter(const std::string& name, std::map<std::string, std::string> labels = {}) const {
    const ClientMetric* m = Find(name, std::move(labels));
    return m == nullptr ? -1 : m->counter.value;
  }
  double Gauge(const std::string& name, std::map<std::string, std::string> labels = {}) const {
    const ClientMetric* m = Find(name, std::move(labels));
    return m == nullptr ? -1 : m->gauge.value;
  }
  uint64_t HistogramCount(const std::string& name) const {
    const ClientMetric* m = Find(name);
    return m == nullptr ? 0 : m->histogram.sample_count;
  }
  double HistogramSum(const std::string& name) const {
    const ClientMetric* m = Find(name);
    return m == nullptr ? -1 : m->histogram.sample_sum;
  }

 private:
  std::map<std::string, MetricFamily> families_;
};

ServingMetricsOptions Options(bool with_energy) {
  ServingMetricsOptions o;
  o.model = "tiny";
  o.precision = "fp8";
  if (with_energy) o.energy_domain = EnergyDomain::kGpu;
  o.efficiency_window = absl::Seconds(10);
  return o;
}

engine::IterationFacts Iteration(double seconds, int prefill, int decode, int64_t fp8_ops, int64_t f32_ops,
                                 double joules) {
  engine::IterationFacts f;
  f.start = absl::UnixEpoch();
  f.end = f.start + absl::Seconds(seconds);
  f.batch_size = 2;
  f.prefill_tokens = prefill;
  f.decode_tokens = decode;
  f.ops_by_precision[static_cast<int>(backend::Precision::kFP8)] = fp8_ops;
  f.ops_by_precision[static_cast<int>(backend::Precision::kF32)] = f32_ops;
  f.joules = joules;
  f.generated_tokens = decode;
  return f;
}

TEST(ServingMetrics, NoMeter_EnergySeriesAbsent_RestPresentWithLabels) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options(false));
  Collected c(*registry);
  for (const char* name : {"qrag_queue_time_seconds", "qrag_time_to_first_token_seconds",
                           "qrag_inter_token_latency_seconds", "qrag_request_duration_seconds",
                           "qrag_prefill_step_seconds", "qrag_decode_step_seconds", "qrag_rag_embed_seconds",
                           "qrag_rag_search_seconds", "qrag_request_prompt_tokens", "qrag_request_generated_tokens",
                           "qrag_requests_total", "qrag_prompt_tokens_total", "qrag_generated_tokens_total",
                           "qrag_tensor_ops_total", "qrag_running_requests", "qrag_waiting_requests",
                           "qrag_kv_blocks_used", "qrag_kv_blocks_free", "qrag_batch_size",
                           "qrag_rag_index_lag_seconds", "qrag_rag_change_apply_seconds"}) {
    EXPECT_TRUE(c.Has(name)) << name;
  }
  for (const char* name : {"qrag_gpu_power_watts", "qrag_gpu_energy_joules_total", "qrag_cpu_power_watts",
                           "qrag_attributed_energy_joules_total", "qrag_request_energy_joules",
                           "qrag_generated_token_energy_joules", "qrag_ops_per_watt", "qrag_tokens_per_joule"}) {
    EXPECT_FALSE(c.Has(name)) << name;
  }
  EXPECT_NE(c.Find("qrag_requests_total", {{"model", "tiny"}, {"precision", "fp8"}, {"outcome", "ok"}}), nullptr);
}

TEST(ServingMetrics, Iterations_CountOpsByPrecisionTokensAndStepTimes) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options(false));
  engine::IterationFacts prefill = Iteration(0.004, 7, 0, 1'000'000, 2'000, 0);
  engine::IterationFacts decode = Iteration(0.001, 0, 2, 300'000, 500, 0);
  const double gaps[] = {0.001, 0.002};
  decode.inter_token_seconds = gaps;
  m.OnIteration(prefill);
  m.OnIteration(decode);
  Collected c(*registry);
  EXPECT_EQ(c.Counter("qrag_tensor_ops_total", {{"precision", "fp8"}}), 1'300'000);
  EXPECT_EQ(c.Counter("qrag_tensor_ops_total", {{"precision", "fp32"}}), 2'500);
  EXPECT_EQ(c.Counter("qrag_generated_tokens_total"), 2);
  EXPECT_EQ(c.HistogramCount("qrag_prefill_step_seconds"), 1u);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_prefill_step_seconds"), 0.004);
  EXPECT_EQ(c.HistogramCount("qrag_decode_step_seconds"), 1u);
  EXPECT_EQ(c.HistogramCount("qrag_inter_token_latency_seconds"), 2u);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_inter_token_latency_seconds"), 0.003);
  EXPECT_EQ(c.Gauge("qrag_batch_size"), 2);
}

TEST(ServingMetrics, Requests_OutcomesByCode_LatenciesOfSuccessfulOnly) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options(false));
  engine::Usage usage{.prompt_tokens = 5, .completion_tokens = 3};
  engine::Timings t{.queue_seconds = 0.01, .time_to_first_token_seconds = 0.02, .total_seconds = 0.05};
  m.OnRequestFinished(absl::OkStatus(), usage, t);
  m.OnRequestFinished(absl::CancelledError("x"), usage, t);
  m.OnRequestRejected(absl::InvalidArgumentError("x"));
  m.OnRequestRejected(absl::InvalidArgumentError("y"));
  m.OnRequestRejected(absl::ResourceExhaustedError("z"));
  Collected c(*registry);
  EXPECT_EQ(c.Counter("qrag_requests_total", {{"outcome", "ok"}}), 1);
  EXPECT_EQ(c.Counter("qrag_requests_total", {{"outcome", "cancelled"}}), 1);
  EXPECT_EQ(c.Counter("qrag_requests_total", {{"outcome", "invalid_argument"}}), 2);
  EXPECT_EQ(c.Counter("qrag_requests_total", {{"outcome", "resource_exhausted"}}), 1);
  EXPECT_EQ(c.Counter("qrag_prompt_tokens_total"), 10);
  EXPECT_EQ(c.HistogramCount("qrag_request_duration_seconds"), 1u);
  EXPECT_EQ(c.HistogramCount("qrag_time_to_first_token_seconds"), 2u);
  EXPECT_EQ(c.HistogramCount("qrag_queue_time_seconds"), 2u);
  EXPECT_EQ(c.HistogramCount("qrag_request_generated_tokens"), 1u);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_request_generated_tokens"), 3);
}

TEST(ServingMetrics, EngineStatsAndRag_Gauges) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options(false));
  engine::EngineStats s;
  s.running = 3;
  s.waiting = 4;
  s.kv_blocks_total = 100;
  s.kv_blocks_free = 60;
  m.OnEngineStats(s);
  m.OnEmbed(0.003);
  m.OnSearch(0.0005);
  m.OnIndexLag(0.25);
  m.OnChangeApplied(0.125);
  Collected c(*registry);
  EXPECT_EQ(c.Gauge("qrag_running_requests"), 3);
  EXPECT_EQ(c.Gauge("qrag_waiting_requests"), 4);
  EXPECT_EQ(c.Gauge("qrag_kv_blocks_used"), 40);
  EXPECT_EQ(c.Gauge("qrag_kv_blocks_free"), 60);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_rag_embed_seconds"), 0.003);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_rag_search_seconds"), 0.0005);
  EXPECT_EQ(c.Gauge("qrag_rag_index_lag_seconds"), 0.25);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_rag_change_apply_seconds"), 0.125);
}

TEST(ServingMetrics, GpuMeter_PowerEnergyAndWindowedEfficiency) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options(true));
  const absl::Time t0 = absl::Now();
  m.OnEnergySample({.time = t0, .joules = 100, .watts = 200});
  m.OnIteration(Iteration(0.01, 0, 4, 8'000'000, 40'000, 2.0));
  m.OnEnergySample({.time = t0 + absl::Seconds(2), .joules = 500, .watts = 210});
  engine::Usage usage{.prompt_tokens = 2, .completion_tokens = 4, .energy_joules = 2.0, .tensor_ops = 8'040'000};
  m.OnRequestFinished(absl::OkStatus(), usage, engine::Timings{});
  Collected c(*registry);
  EXPECT_EQ(c.Gauge("qrag_gpu_power_watts"), 210);
  EXPECT_DOUBLE_EQ(c.Counter("qrag_gpu_energy_joules_total"), 400);  // from the first sample on
  EXPECT_DOUBLE_EQ(c.Counter("qrag_attributed_energy_joules_total"), 2.0);
  EXPECT_DOUBLE_EQ(c.Gauge("qrag_ops_per_watt", {{"precision", "fp8"}}), 8'000'000 / 400.0);
  EXPECT_DOUBLE_EQ(c.Gauge("qrag_ops_per_watt", {{"precision", "fp32"}}), 40'000 / 400.0);
  EXPECT_EQ(c.Find("qrag_ops_per_watt", {{"precision", "int8"}}), nullptr);  // no int8 ops: no series
  EXPECT_DOUBLE_EQ(c.Gauge("qrag_tokens_per_joule"), 4 / 400.0);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_request_energy_joules"), 2.0);
  EXPECT_DOUBLE_EQ(c.HistogramSum("qrag_generated_token_energy_joules"), 0.5);
}

TEST(ServingMetrics, OutcomeLabel_LowerCaseCodeNames) {
  EXPECT_EQ(ServingMetrics::OutcomeLabel(absl::OkStatus()), "ok");
  EXPECT_EQ(ServingMetrics::OutcomeLabel(absl::DeadlineExceededError("")), "deadline_exceeded");
  EXPECT_EQ(ServingMetrics::OutcomeLabel(absl::OutOfRangeError("")), "out_of_range");
}

}  // namespace
}  // namespace qrag::metrics
