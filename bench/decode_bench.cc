// CPU decode throughput against the memory-bandwidth limit, measured in one run.
//
// Batch-1 decode reads every weight once per token, so its speed limit is (weight bytes per token) /
// (memory bandwidth). This program measures the machine's read bandwidth (all threads streaming over a
// buffer far larger than the caches), then for each model x precision the decode tokens/s, and prints
// the fraction of the limit reached:  ratio = (bytes per token x tokens/s) / measured bandwidth.
//
//   decode_bench [--models stories260K,stories110M,llama-3.2-1b] [--precisions fp32,bf16,fp8,int8]
//                [--tokens N] [--threads N] [--stories260k PATH]
//
// stories260K uses the real checkpoint when --stories260k (or $QRAG_SHARED_DIR) points at it; the other
// shapes are random-weight models (weights' values do not change the work done).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/common/thread_pool.h"
#include "server/model/host_tensor.h"
#include "server/model/kv_cache.h"
#include "server/model/random_model.h"
#include "server/model/transformer.h"

namespace qrag {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Read bandwidth: every thread sums its slice of a 2 GiB buffer with 8 independent accumulators (the
// compiler vectorizes this to full-width loads); best of 5 passes.
double MeasureReadBandwidth(int threads) {
  const size_t bytes = size_t{2} << 30;
  const size_t n = bytes / sizeof(float);
  std::vector<float> buf(n);
  for (size_t i = 0; i < n; i += 1024) buf[i] = static_cast<float>(i & 7);
  ThreadPool pool(threads);
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<float> partial(pool.num_threads() * 16, 0.0f);
    auto t0 = Clock::now();
    pool.ParallelFor(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      float acc[8] = {};
      int64_t i = b;
      for (; i + 8 <= e; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += buf[i + j];
      }
      for (; i < e; ++i) acc[0] += buf[i];
      float s = 0;
      for (float a : acc) s += a;
      partial[(b / (1 << 16)) % partial.size()] += s;
    });
    auto t1 = Clock::now();
    for (float p : partial) sink = sink + p;
    best = std::max(best, bytes / Seconds(t0, t1));
  }
  return best;
}

struct Result {
  std::string model, precision;
  double bytes_per_token, tokens_per_s, ratio;
};

absl::StatusOr<Result> RunOne(const std::string& name, const model::LoadedModel& m, backend::Precision p, int threads,
                              int tokens, double bandwidth) {
  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = false, .num_threads = threads});
  model::TransformerOptions o;
  o.precision = p;
  auto t = model::Transformer::Create(m, &cpu, o);
  if (!t.ok()) return t.status();
  const int steps = tokens + 2;  // 2 warm-up steps
  model::KvCacheOptions kv{.num_blocks = model::KvCache::BlocksFor(steps + 1, 16), .block_size = 16};
  auto cache = model::KvCache::Create(&cpu, m.config, kv);
  if (!cache.ok()) return cache.status();
  std::vector<int32_t> table(kv.num_blocks);
  for (int i = 0; i < kv.num_blocks; ++i) table[i] = i;
  const backend::AttentionBatch::Sequence seq{table};
  std::vector<float> logits(m.config.vocab_size);
  Clock::time_point start;
  int32_t token = 1;
  for (int step = 0; step < steps; ++step) {
    if (step == 2) start = Clock::now();
    const int32_t pos = step, which = 0, row = 0;
    backend::AttentionBatch batch;
    batch.positions = absl::MakeConstSpan(&pos, 1);
    batch.token_seq = absl::MakeConstSpan(&which, 1);
    batch.sequences = absl::MakeConstSpan(&seq, 1);
    auto s = (*t)->Forward(absl::MakeConstSpan(&token, 1), batch, absl::MakeConstSpan(&row, 1), *cache, logits.data());
    if (!s.ok()) return s;
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double secs = Seconds(start, Clock::now());
  Result r;
  r.model = name;
  r.precision = backend::PrecisionName(p);
  r.bytes_per_token = static_cast<double>((*t)->weight_bytes_per_token());
  r.tokens_per_s = tokens / secs;
  r.ratio = r.bytes_per_token * r.tokens_per_s / bandwidth;
  return r;
}

int Main(int argc, char** argv) {
  std::vector<std::string> models = {"stories260K", "stories110M", "llama-3.2-1b"};
  std::vector<std::string> precisions = {"fp32", "bf16", "fp8", "int8"};
  int tokens = 16, threads = 0;
  std::string stories_path;
  if (const char* shared = std::getenv("QRAG_SHARED_DIR")) {
    stories_path = std::string(shared) + "/models/stories260K/stories260K.bin";
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--models") models = absl::StrSplit(value, ',');
    else if (flag == "--precisions") precisions = absl::StrSplit(value, ',');
    else if (flag == "--tokens") (void)absl::SimpleAtoi(value, &tokens);
    else if (flag == "--threads") (void)absl::SimpleAtoi(value, &threads);
    else if (flag == "--stories260k") stories_path = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const int pool_threads = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  const double bw = MeasureReadBandwidth(pool_threads);
  std::printf("measured read bandwidth: %.2f GB/s (%d threads)\n\n", bw / 1e9, pool_threads);
  std::printf("| model | precision | weight MB/token | tokens/s | GB/s achieved | fraction of bandwidth |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  for (const std::string& name : models) {
    absl::StatusOr<model::LoadedModel> m;
    std::string label = name;
    if (name == "stories260K" && !stories_path.empty() && std::filesystem::exists(stories_path)) {
      m = model::LoadCheckpoint(stories_path);
      label += " (real)";
    } else {
      auto shape = model::NamedModelShape(name);
      if (!shape.ok()) {
        std::fprintf(stderr, "%s\n", shape.status().ToString().c_str());
        return 2;
      }
      m = model::MakeRandomModel(*shape, 1);
      label += " (random weights)";
    }
    if (!m.ok()) {
      std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
      return 1;
    }
    for (const std::string& pname : precisions) {
      auto p = backend::ParsePrecision(pname);
      if (!p.ok()) {
        std::fprintf(stderr, "%s\n", p.status().ToString().c_str());
        return 2;
      }
      auto r = RunOne(label, *m, *p, threads, tokens, bw);
      if (!r.ok()) {
        std::fprintf(stderr, "%s %s: %s\n", label.c_str(), pname.c_str(), r.status().ToString().c_str());
        return 1;
      }
      std::printf("| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", r->model.c_str(), r->precision.c_str(),
                  r->bytes_per_token / 1e6, r->tokens_per_s, r->bytes_per_token * r->tokens_per_s / 1e9, r->ratio);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
