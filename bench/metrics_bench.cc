// What the metrics cost the engine thread: one ServingMetrics::OnIteration (a decode iteration of a batch of
// 16 with ops in two precisions and 16 inter-token gaps), OnRequestFinished, and the EnergySampler's
// CumulativeJoules read the engine does twice per iteration — against a real prometheus-cpp registry, with a
// concurrent scrape (Registry::Collect + text serialization) in the background when scrape = 1.
//
//   BM_OnIteration/<scrape>, BM_OnRequestFinished/<scrape>, BM_CumulativeJoules
//
// Run: build/bench/metrics_bench. Numbers are noisy on a shared machine.
#include <atomic>
#include <thread>

#include "benchmark/benchmark.h"
#include "prometheus/text_serializer.h"
#include "server/engine/engine.h"
#include "server/metrics/energy_sampler.h"
#include "server/metrics/serving_metrics.h"

namespace qrag::metrics {
namespace {

// Scrapes the registry in a loop until destroyed, as Prometheus would (far more often).
class BackgroundScrape {
 public:
  BackgroundScrape(const prometheus::Registry* r, bool on) {
    if (!on) return;
    thread_ = std::thread([this, r] {
      prometheus::TextSerializer text;
      while (!stop_.load()) benchmark::DoNotOptimize(text.Serialize(r->Collect()));
    });
  }
  ~BackgroundScrape() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

ServingMetricsOptions Options() {
  ServingMetricsOptions o;
  o.model = "bench";
  o.precision = "fp8";
  o.energy_domain = EnergyDomain::kGpu;
  return o;
}

void BM_OnIteration(benchmark::State& state) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options());
  BackgroundScrape scrape(registry.get(), state.range(0) != 0);
  std::vector<double> gaps(16, 0.004);
  engine::IterationFacts f;
  f.start = absl::Now();
  f.end = f.start + absl::Milliseconds(4);
  f.batch_size = 16;
  f.decode_tokens = 16;
  f.generated_tokens = 16;
  f.ops_by_precision[static_cast<int>(backend::Precision::kFP8)] = 16LL * 2 * 1'000'000'000;
  f.ops_by_precision[static_cast<int>(backend::Precision::kF32)] = 16LL * 4 * 4096 * 128 * 32;
  f.joules = 2.5;
  f.inter_token_seconds = gaps;
  for (auto _ : state) m.OnIteration(f);
}
BENCHMARK(BM_OnIteration)->Arg(0)->Arg(1)->UseRealTime();

void BM_OnRequestFinished(benchmark::State& state) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics m(registry, Options());
  BackgroundScrape scrape(registry.get(), state.range(0) != 0);
  engine::Usage usage{.prompt_tokens = 100, .completion_tokens = 256, .energy_joules = 40, .tensor_ops = 1LL << 40};
  engine::Timings t{.queue_seconds = 0.01, .time_to_first_token_seconds = 0.05, .total_seconds = 1.2};
  for (auto _ : state) m.OnRequestFinished(absl::OkStatus(), usage, t);
}
BENCHMARK(BM_OnRequestFinished)->Arg(0)->Arg(1)->UseRealTime();

class ConstantPower : public EnergyMeter {
 public:
  absl::StatusOr<EnergyReading> Read() override { return EnergyReading{.joules = joules_ += 30, .watts = 300}; }
  EnergyDomain domain() const override { return EnergyDomain::kGpu; }
  std::string description() const override { return "constant"; }

 private:
  double joules_ = 0;
};

void BM_CumulativeJoules(benchmark::State& state) {
  EnergySamplerOptions o;
  o.interval = absl::Milliseconds(100);
  EnergySampler sampler(std::make_unique<ConstantPower>(), o);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.CumulativeJoules());
}
BENCHMARK(BM_CumulativeJoules);

}  // namespace
}  // namespace qrag::metrics

BENCHMARK_MAIN();
