#include "client/bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace qrag::client {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct RequestResult {
  bool ok = false;
  std::string error;
  double ttft_s = 0, e2e_s = 0;
  int prompt_tokens = 0, completion_tokens = 0;
  std::vector<double> itl_s;
  bool got_text = false;
};

RequestResult RunOne(Client& client, const qrag::v1::GenerateRequest& request, const CallOptions& call) {
  RequestResult r;
  const Clock::time_point sent = Clock::now();
  Clock::time_point last_text = sent;
  absl::StatusOr<qrag::v1::GenerateStreamResponse> last = client.GenerateStream(
      request,
      [&](const qrag::v1::GenerateStreamResponse& m) {
        if (m.text().empty()) return true;
        const Clock::time_point now = Clock::now();
        if (!r.got_text) {
          r.ttft_s = Seconds(now - sent);
          r.got_text = true;
        } else {
          r.itl_s.push_back(Seconds(now - last_text));
        }
        last_text = now;
        return true;
      },
      call);
  r.e2e_s = Seconds(Clock::now() - sent);
  if (!last.ok()) {
    r.error = absl::StrCat(absl::StatusCodeToString(last.status().code()), ": ", last.status().message());
    return r;
  }
  r.ok = true;
  r.prompt_tokens = last->usage().prompt_tokens();
  r.completion_tokens = last->usage().completion_tokens();
  if (!r.got_text) r.ttft_s = r.e2e_s;  // no text at all (e.g. an immediate stop): first token = the end
  return r;
}

nlohmann::json SummaryJson(const LatencySummary& s) {
  return {{"mean_ms", s.mean}, {"p50_ms", s.p50}, {"p90_ms", s.p90}, {"p99_ms", s.p99}, {"count", s.count}};
}

}  // namespace

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

LatencySummary Summarize(const std::vector<double>& values_ms) {
  LatencySummary s;
  s.count = static_cast<int>(values_ms.size());
  if (values_ms.empty()) return s;
  s.mean = std::accumulate(values_ms.begin(), values_ms.end(), 0.0) / static_cast<double>(values_ms.size());
  s.p50 = Percentile(values_ms, 50);
  s.p90 = Percentile(values_ms, 90);
  s.p99 = Percentile(values_ms, 99);
  return s;
}

absl::StatusOr<BenchReport> RunBench(Client& client, const BenchOptions& options) {
  if (options.concurrency < 1 || options.concurrency > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("concurrency must be in [1, 1024] (got ", options.concurrency, ")"));
  }
  if (options.requests < 1 || options.requests > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat("requests must be in [1, 1000000] (got ", options.requests, ")"));
  }
  if (options.request_timeout <= absl::ZeroDuration() || options.max_duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("request timeout and max duration must be > 0");
  }
  std::vector<RequestResult> results(options.requests);
  std::vector<char> started(options.requests, 0);  // not vector<bool>: threads write distinct elements
  std::atomic<int> next{0};
  const Clock::time_point begin = Clock::now();
  const Clock::time_point stop_starting = begin + absl::ToChronoNanoseconds(options.max_duration);
  std::mutex end_mu;
  Clock::time_point end = begin;
  auto worker = [&] {
    while (true) {
      const int i = next.fetch_add(1);
      if (i >= options.requests || Clock::now() >= stop_starting) return;
      qrag::v1::GenerateRequest request = options.request;
      if (request.has_seed()) request.set_seed(request.seed() + static_cast<uint64_t>(i));
      CallOptions call;
      call.timeout = options.request_timeout;
      started[i] = 1;  // each index written by one thread only; read after join
      results[i] = RunOne(client, request, call);
      std::lock_guard<std::mutex> lock(end_mu);
      end = std::max(end, Clock::now());
    }
  };
  std::vector<std::thread> threads;
  const int n_threads = std::min(options.concurrency, options.requests);
  threads.reserve(n_threads);
  for (int t = 0; t < n_threads; ++t) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();

  BenchReport report;
  report.concurrency = options.concurrency;
  report.requests = options.requests;
  report.duration_s = Seconds(end - begin);
  std::vector<double> ttft, tpot, itl, e2e;
  for (int i = 0; i < options.requests; ++i) {
    if (!started[i]) {
      ++report.not_started;
      continue;
    }
    const RequestResult& r = results[i];
    if (!r.ok) {
      ++report.failed;
      if (report.errors.size() < 10 || report.errors.count(r.error) > 0) ++report.errors[r.error];
      continue;
    }
    ++report.completed;
    report.prompt_tokens += r.prompt_tokens;
    report.completion_tokens += r.completion_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    if (r.completion_tokens > 1) tpot.push_back((r.e2e_s - r.ttft_s) * 1e3 / (r.completion_tokens - 1));
    for (double gap : r.itl_s) itl.push_back(gap * 1e3);
  }
  if (report.duration_s > 0) {
    report.request_throughput = report.completed / report.duration_s;
    report.output_token_throughput = static_cast<double>(report.completion_tokens) / report.duration_s;
    report.total_token_throughput =
        static_cast<double>(report.prompt_tokens + report.completion_tokens) / report.duration_s;
  }
  report.ttft = Summarize(ttft);
  report.tpot = Summarize(tpot);
  report.itl = Summarize(itl);
  report.e2e = Summarize(e2e);
  return report;
}

std::string FormatBenchReport(const BenchReport& r) {
  std::string out;
  absl::StrAppendFormat(&out, "requests            %d (concurrency %d)\n", r.requests, r.concurrency);
  absl::StrAppendFormat(&out, "completed           %d\nfailed              %d\n", r.completed, r.failed);
  if (r.not_started > 0) absl::StrAppendFormat(&out, "not started         %d (max duration passed)\n", r.not_started);
  for (const auto& [error, count] : r.errors) absl::StrAppendFormat(&out, "  error x%d: %s\n", count, error);
  absl::StrAppendFormat(&out, "duration            %.3f s\n", r.duration_s);
  absl::StrAppendFormat(&out, "prompt tokens       %d\ncompletion tokens   %d\n", r.prompt_tokens,
                        r.completion_tokens);
  absl::StrAppendFormat(&out, "request throughput  %.3f req/s\n", r.request_throughput);
  absl::StrAppendFormat(&out, "output throughput   %.2f tok/s\n", r.output_token_throughput);
  absl::StrAppendFormat(&out, "total throughput    %.2f tok/s\n", r.total_token_throughput);
  absl::StrAppendFormat(&out, "%-8s %10s %10s %10s %10s %8s\n", "ms", "mean", "p50", "p90", "p99", "samples");
  for (const auto& [name, s] : {std::pair<const char*, const LatencySummary&>{"TTFT", r.ttft},
                                {"TPOT", r.tpot}, {"ITL", r.itl}, {"E2E", r.e2e}}) {
    absl::StrAppendFormat(&out, "%-8s %10.2f %10.2f %10.2f %10.2f %8d\n", name, s.mean, s.p50, s.p90, s.p99,
                          s.count);
  }
  return out;
}

std::string BenchReportJson(const BenchReport& r) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [error, count] : r.errors) errors[error] = count;
  nlohmann::json j = {
      {"concurrency", r.concurrency},
      {"requests", r.requests},
      {"completed", r.completed},
      {"failed", r.failed},
      {"not_started", r.not_started},
      {"errors", errors},
      {"duration_s", r.duration_s},
      {"prompt_tokens", r.prompt_tokens},
      {"completion_tokens", r.completion_tokens},
      {"request_throughput", r.request_throughput},
      {"output_token_throughput", r.output_token_throughput},
      {"total_token_throughput", r.total_token_throughput},
      {"ttft", SummaryJson(r.ttft)},
      {"tpot", SummaryJson(r.tpot)},
      {"itl", SummaryJson(r.itl)},
      {"e2e", SummaryJson(r.e2e)},
  };
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace qrag::client
