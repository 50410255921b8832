// qrag bench: a closed-loop load generator over GenerateStream, reporting latency and throughput with the
// definitions of `vllm bench serve` (vllm/benchmarks/serve.py):
//   TTFT  time to first token: request sent -> first message with non-empty text;
//   TPOT  time per output token, per request: (E2E - TTFT) / (output_tokens - 1), requests with > 1 token;
//   ITL   inter-token latency: gaps between consecutive text-carrying messages, pooled over all requests
//         (the server coalesces tokens produced while a write is in flight, so one gap may span several);
//   E2E   end-to-end latency: request sent -> last message;
//   request throughput = completed requests / wall duration; output token throughput = completion tokens /
//   wall duration; total token throughput = (prompt + completion tokens) / wall duration.
// Percentiles interpolate linearly between order statistics (numpy.percentile's default, as vllm).
//
// Bounded: exactly `requests` requests (at most `concurrency` in flight), each with a deadline, and no
// request is started after `max_duration`. Traffic goes only to the Client's server.
#ifndef QRAG_CLIENT_BENCH_H_
#define QRAG_CLIENT_BENCH_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "qrag/v1/inference.pb.h"

namespace qrag::client {

struct BenchOptions {
  int concurrency = 1;  // [1, 1024]
  int requests = 16;    // [1, 1000000]
  // The request each call sends; with a seed, request i uses seed + i (reproducible, yet not identical).
  qrag::v1::GenerateRequest request;
  absl::Duration request_timeout = absl::Minutes(5);  // each call's deadline
  absl::Duration max_duration = absl::Minutes(10);    // no request starts after this
};

struct LatencySummary {  // milliseconds
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  int count = 0;  // samples
};

struct BenchReport {
  int concurrency = 0;
  int requests = 0;            // asked for
  int completed = 0;           // finished OK
  int failed = 0;              // ended with an RPC error
  int not_started = 0;         // skipped: max_duration passed
  std::map<std::string, int> errors;  // "CODE: message" -> count (first 10 distinct)
  double duration_s = 0;       // first request sent -> last one ended
  int64_t prompt_tokens = 0;   // over completed requests
  int64_t completion_tokens = 0;
  double request_throughput = 0;        // completed / duration
  double output_token_throughput = 0;   // completion tokens / duration
  double total_token_throughput = 0;    // (prompt + completion) tokens / duration
  LatencySummary ttft, tpot, itl, e2e;
};

// INVALID_ARGUMENT for options out of range; otherwise runs the load (RPC failures are counted, not
// returned).
absl::StatusOr<BenchReport> RunBench(Client& client, const BenchOptions& options);

// numpy.percentile(values, q) with linear interpolation; 0 for no values. `values` need not be sorted.
double Percentile(std::vector<double> values, double q);
LatencySummary Summarize(const std::vector<double>& values_ms);

std::string FormatBenchReport(const BenchReport& report);  // human-readable table
std::string BenchReportJson(const BenchReport& report);    // one JSON object

}  // namespace qrag::client

#endif  // QRAG_CLIENT_BENCH_H_
