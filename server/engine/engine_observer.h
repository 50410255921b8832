// What the engine tells the outside world about its work, without knowing who listens: the seam between the
// engine and the metrics layer (server/metrics/ implements these; no Prometheus type appears here).
//
// Hot path: the engine thread calls EngineObserver and EnergySource synchronously once or twice per
// iteration, so implementations must be quick and must never block on I/O or on a lock another thread holds
// for long (server/metrics/ updates atomics and reads the energy meter's latest sample; the meter itself is
// read on its own thread).
#ifndef QRAG_SERVER_ENGINE_ENGINE_OBSERVER_H_
#define QRAG_SERVER_ENGINE_ENGINE_OBSERVER_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/model/forward_stats.h"

namespace qrag::engine {

struct Usage;        // engine.h
struct Timings;      // engine.h
struct EngineStats;  // engine.h

// Cumulative energy as metered (joules since an arbitrary origin, never decreasing). The engine reads it at
// the start and at the end of every iteration, in that order, and charges the difference to the requests of
// the iteration. Thread-safe; must return at once (the latest sample, not a fresh device read).
class EnergySource {
 public:
  virtual ~EnergySource() = default;
  virtual double CumulativeJoules() = 0;
};

// One engine iteration: schedule -> forward -> sample, over `batch_size` sequences.
struct IterationFacts {
  absl::Time start;                 // before the forward step
  absl::Time end;                   // after sampling (before the finished requests are reported)
  int batch_size = 0;               // sequences in the batch
  int prefill_tokens = 0;           // prompt tokens (and tokens recomputed after a preemption)
  int decode_tokens = 0;            // one per sequence that was decoding
  // Exact tensor ops of the step by precision (model::ForwardStats; zero when the runner does not count).
  std::array<int64_t, model::kNumPrecisions> ops_by_precision{};
  // Energy metered between start and end, split across the batch by tokens processed (0 without an
  // EnergySource). Equal to the sum of what the iteration added to its requests' Usage::energy_joules.
  double joules = 0;
  int generated_tokens = 0;         // tokens appended to completions this iteration
  // Prefix cache, over the sequences admitted this iteration (readmissions after a preemption included): their
  // known tokens, and those whose K/V came from the cache.
  int prefix_queried_tokens = 0;
  int prefix_hit_tokens = 0;
  // The gap since the same request's previous token, for each token generated this iteration by a request
  // that already had one (the inter-token latency).
  absl::Span<const double> inter_token_seconds;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // After every iteration that ran a forward step (also a failed one).
  virtual void OnIteration(const IterationFacts& facts) = 0;
  // Once per request that was accepted by Submit, when it ends (before the engine's stats stop counting it and
  // before its RequestObserver::OnFinish, so that whoever sees the end also sees it recorded):
  // `status` as given to OnFinish (OK, CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL, ...).
  virtual void OnRequestFinished(const absl::Status& status, const Usage& usage, const Timings& timings) = 0;
  // A request Submit refused (INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED, UNAVAILABLE, ...). Called on
  // the submitting thread.
  virtual void OnRequestRejected(const absl::Status& status) = 0;
  // The engine's queue and KV-cache state, after every loop turn (EngineStats of engine.h).
  virtual void OnEngineStats(const EngineStats& stats) = 0;
};

// Optional listeners of an Engine (engine.h). Not owned; must outlive the engine. Either may be null.
struct EngineHooks {
  EngineObserver* observer = nullptr;
  EnergySource* energy = nullptr;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_ENGINE_OBSERVER_H_
