#include "server/metrics/serving_metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/backend/precision.h"
#include "server/engine/engine.h"

namespace qrag::metrics {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,      2.5,   5,    10,    25,   60,  120};
  return *b;
}
const Histogram::BucketBoundaries& StepBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,   0.1,   0.25,   0.5,   1,    2.5};
  return *b;
}
const Histogram::BucketBoundaries& TokenBuckets() {
  static const auto* b = [] {
    auto* v = new Histogram::BucketBoundaries;
    for (double x = 1; x <= 32768; x *= 2) v->push_back(x);
    return v;
  }();
  return *b;
}
const Histogram::BucketBoundaries& RequestJouleBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000};
  return *b;
}
const Histogram::BucketBoundaries& TokenJouleBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
  return *b;
}

}  // namespace

struct ServingMetrics::Energy {
  Gauge* power = nullptr;
  Counter* device_joules = nullptr;
  Counter* attributed_joules = nullptr;
  Histogram* request_joules = nullptr;
  Histogram* token_joules = nullptr;
  Family<Gauge>* ops_per_watt_family = nullptr;
  std::array<Gauge*, model::kNumPrecisions> ops_per_watt{};  // created when a precision first has ops
  Gauge* tokens_per_joule = nullptr;
  std::mutex mu;  // guards the window and last_joules (OnEnergySample)
  EfficiencyWindow window;
  double last_joules = -1;

  explicit Energy(absl::Duration w) : window(w) {}
};

ServingMetrics::ServingMetrics(std::shared_ptr<prometheus::Registry> registry, const ServingMetricsOptions& options)
    : registry_(std::move(registry)), options_(options) {
  prometheus::Registry& r = *registry_;
  const Labels common{{"model", options_.model}, {"precision", options_.precision}};
  auto histogram = [&](const std::string& name, const std::string& help,
                       const Histogram::BucketBoundaries& buckets) -> Histogram* {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(common, buckets);
  };
  auto counter = [&](const std::string& name, const std::string& help) -> Counter* {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(common);
  };
  auto gauge = [&](const std::string& name, const std::string& help) -> Gauge* {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(common);
  };

  queue_time_ = histogram("qrag_queue_time_seconds",
                          "Time from arrival until first scheduled into the running batch.", LatencyBuckets());
  ttft_ = histogram("qrag_time_to_first_token_seconds", "Time from arrival to the first generated token.",
                    LatencyBuckets());
  itl_ = histogram("qrag_inter_token_latency_seconds",
                   "Time between two consecutive generated tokens of one request.", LatencyBuckets());
  e2e_ = histogram("qrag_request_duration_seconds",
                   "End-to-end time of a successful request, arrival to finish.", LatencyBuckets());
  prefill_step_ = histogram("qrag_prefill_step_seconds",
                            "Duration of an engine iteration that processed prompt tokens (forward and sampling).",
                            StepBuckets());
  decode_step_ = histogram("qrag_decode_step_seconds",
                           "Duration of an engine iteration of decode steps only (forward and sampling).",
                           StepBuckets());
  rag_embed_ = histogram("qrag_rag_embed_seconds", "Time to embed one retrieval query.", LatencyBuckets());
  rag_search_ = histogram("qrag_rag_search_seconds", "Time of one vector-index search.", LatencyBuckets());
  rag_change_apply_ = histogram("qrag_rag_change_apply_seconds",
                                "Shared store: time from another replica's commit to its change in this "
                                "replica's indexes.",
                                LatencyBuckets());
  rag_index_lag_ = gauge("qrag_rag_index_lag_seconds",
                         "Shared store: bound on how far this replica's indexes are behind the database (0 with "
                         "SQLite).");
  prompt_tokens_per_request_ = histogram("qrag_request_prompt_tokens", "Prompt tokens of a successful request.",
                                         TokenBuckets());
  generated_tokens_per_request_ = histogram("qrag_request_generated_tokens",
                                            "Generated tokens of a successful request.", TokenBuckets());
  prompt_tokens_ = counter("qrag_prompt_tokens_total", "Prompt tokens of finished requests.");
  generated_tokens_ = counter("qrag_generated_tokens_total", "Tokens generated.");
  running_ = gauge("qrag_running_requests", "Requests holding KV-cache blocks (prefilling or decoding).");
  waiting_ = gauge("qrag_waiting_requests", "Requests queued, not yet running.");
  kv_used_ = gauge("qrag_kv_blocks_used", "KV-cache blocks held by requests.");
  kv_free_ = gauge("qrag_kv_blocks_free", "KV-cache blocks free (cached prefixes no request uses included).");
  kv_cached_ = gauge("qrag_prefix_cache_blocks", "KV-cache blocks holding a cached prompt prefix.");
  prefix_queried_ = counter("qrag_prefix_cache_queried_tokens_total",
                            "Prompt tokens of admitted requests looked up in the prefix cache.");
  prefix_hit_ = counter("qrag_prefix_cache_hit_tokens_total",
                        "Prompt tokens whose K/V came from the prefix cache instead of being computed.");
  batch_size_ = gauge("qrag_batch_size", "Sequences in the last engine iteration.");
  requests_family_ = &prometheus::BuildCounter()
                          .Name("qrag_requests_total")
                          .Help("Requests by outcome: ok, or the gRPC status code they ended with.")
                          .Register(r);
  requests_ok_ = &requests_family_->Add({{"model", options_.model}, {"precision", options_.precision},
                                         {"outcome", "ok"}});
  ops_family_ = &prometheus::BuildCounter()
                     .Name("qrag_tensor_ops_total")
                     .Help("Exact tensor ops (2*M*N*K of every GEMM plus attention's QK^T and PV), by the "
                           "precision they ran in.")
                     .Register(r);
  for (auto& c : ops_) c.store(nullptr);
  for (auto& c : ops_total_) c.store(0);
  OpsCounter(static_cast<int>(backend::Precision::kF32));  // attention: present from the start

  if (options_.energy_domain.has_value()) {
    const std::string domain = EnergyDomainName(*options_.energy_domain);
    energy_ = std::make_unique<Energy>(options_.efficiency_window);
    energy_->power = gauge(absl::StrCat("qrag_", domain, "_power_watts"),
                           absl::StrCat("Power drawn by the ", domain, " as last sampled."));
    energy_->device_joules = counter(absl::StrCat("qrag_", domain, "_energy_joules_total"),
                                     absl::StrCat("Energy used by the ", domain, " since the server started."));
    energy_->attributed_joules =
        counter("qrag_attributed_energy_joules_total",
                "Energy metered during engine iterations, charged to the requests in them by tokens processed.");
    energy_->request_joules = histogram("qrag_request_energy_joules", "Energy charged to a successful request.",
                                        RequestJouleBuckets());
    energy_->token_joules =
        histogram("qrag_generated_token_energy_joules",
                  "Energy charged to a successful request divided by its generated tokens.", TokenJouleBuckets());
    energy_->ops_per_watt_family =
        &prometheus::BuildGauge()
             .Name("qrag_ops_per_watt")
             .Help("Tensor ops per second divided by watts (= ops per joule) over the sliding window, by precision.")
             .Register(r);
    energy_->tokens_per_joule =
        gauge("qrag_tokens_per_joule", "Generated tokens per joule over the sliding window.");
  }
}

ServingMetrics::~ServingMetrics() = default;

std::string ServingMetrics::OutcomeLabel(const absl::Status& status) {
  if (status.ok()) return "ok";
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

prometheus::Counter& ServingMetrics::RequestsWithOutcome(const std::string& outcome) {
  if (outcome == "ok") return *requests_ok_.load();
  std::lock_guard<std::mutex> lock(lazy_mu_);
  return requests_family_->Add({{"model", options_.model}, {"precision", options_.precision}, {"outcome", outcome}});
}

prometheus::Counter& ServingMetrics::OpsCounter(int precision) {
  if (Counter* c = ops_[precision].load(std::memory_order_acquire); c != nullptr) return *c;
  std::lock_guard<std::mutex> lock(lazy_mu_);
  Counter* c = &ops_family_->Add(
      {{"model", options_.model}, {"precision", backend::PrecisionName(static_cast<backend::Precision>(precision))}});
  ops_[precision].store(c, std::memory_order_release);
  return *c;
}

void ServingMetrics::OnIteration(const engine::IterationFacts& f) {
  const double seconds = absl::ToDoubleSeconds(f.end - f.start);
  (f.prefill_tokens > 0 ? prefill_step_ : decode_step_)->Observe(seconds);
  batch_size_->Set(f.batch_size);
  for (int p = 0; p < model::kNumPrecisions; ++p) {
    if (f.ops_by_precision[p] == 0) continue;
    OpsCounter(p).Increment(static_cast<double>(f.ops_by_precision[p]));
    ops_total_[p].fetch_add(f.ops_by_precision[p], std::memory_order_relaxed);
  }
  if (f.prefix_queried_tokens > 0) prefix_queried_->Increment(f.prefix_queried_tokens);
  if (f.prefix_hit_tokens > 0) prefix_hit_->Increment(f.prefix_hit_tokens);
  if (f.generated_tokens > 0) {
    generated_tokens_->Increment(f.generated_tokens);
    generated_total_.fetch_add(f.generated_tokens, std::memory_order_relaxed);
  }
  for (double gap : f.inter_token_seconds) itl_->Observe(gap);
  if (energy_ != nullptr && f.joules > 0) energy_->attributed_joules->Increment(f.joules);
}

void ServingMetrics::OnRequestFinished(const absl::Status& status, const engine::Usage& usage,
                                       const engine::Timings& timings) {
  RequestsWithOutcome(OutcomeLabel(status)).Increment();
  prompt_tokens_->Increment(usage.prompt_tokens);
  queue_time_->Observe(timings.queue_seconds);
  if (usage.completion_tokens > 0) ttft_->Observe(timings.time_to_first_token_seconds);
  if (!status.ok()) return;
  e2e_->Observe(timings.total_seconds);
  prompt_tokens_per_request_->Observe(usage.prompt_tokens);
  generated_tokens_per_request_->Observe(usage.completion_tokens);
  if (energy_ != nullptr) {
    energy_->request_joules->Observe(usage.energy_joules);
    if (usage.completion_tokens > 0) energy_->token_joules->Observe(usage.energy_joules / usage.completion_tokens);
  }
}

void ServingMetrics::OnRequestRejected(const absl::Status& status) {
  RequestsWithOutcome(OutcomeLabel(status)).Increment();
}

void ServingMetrics::OnEngineStats(const engine::EngineStats& s) {
  running_->Set(s.running);
  waiting_->Set(s.waiting);
  kv_used_->Set(s.kv_blocks_total - s.kv_blocks_free);
  kv_free_->Set(s.kv_blocks_free);
  kv_cached_->Set(s.kv_blocks_cached);
  if (s.running == 0) batch_size_->Set(0);
}

void ServingMetrics::OnEmbed(double seconds) { rag_embed_->Observe(seconds); }
void ServingMetrics::OnSearch(double seconds) { rag_search_->Observe(seconds); }
void ServingMetrics::OnIndexLag(double seconds) { rag_index_lag_->Set(seconds); }
void ServingMetrics::OnChangeApplied(double seconds) { rag_change_apply_->Observe(seconds); }

void ServingMetrics::OnEnergySample(const EnergySample& sample) {
  if (energy_ == nullptr) return;
  Energy& e = *energy_;
  std::lock_guard<std::mutex> lock(e.mu);
  e.power->Set(sample.watts);
  if (e.last_joules >= 0 && sample.joules > e.last_joules) e.device_joules->Increment(sample.joules - e.last_joules);
  e.last_joules = std::max(e.last_joules, sample.joules);
  EfficiencyPoint point;
  point.time = sample.time;
  point.joules = sample.joules;
  point.generated_tokens = generated_total_.load(std::memory_order_relaxed);
  for (int p = 0; p < model::kNumPrecisions; ++p) point.ops[p] = ops_total_[p].load(std::memory_order_relaxed);
  e.window.Add(point);
  const EfficiencyFigures f = e.window.Compute();
  if (!f.valid) return;
  for (int p = 0; p < model::kNumPrecisions; ++p) {
    if (e.ops_per_watt[p] == nullptr) {
      if (f.ops_per_joule[p] == 0) continue;
      e.ops_per_watt[p] = &e.ops_per_watt_family->Add(
          {{"model", options_.model}, {"precision", backend::PrecisionName(static_cast<backend::Precision>(p))}});
    }
    e.ops_per_watt[p]->Set(f.ops_per_joule[p]);
  }
  e.tokens_per_joule->Set(f.tokens_per_joule);
}

}  // namespace qrag::metrics
