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
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
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
#include "server/common/cpu_features.h"
#include "server/common/thread_pool.h"
#include "server/model/host_tensor.h"
#include "server/model/kv_cache.h"
#include "server/model/random_model.h"
#include "server/model/transformer.h"

namespace qrag {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Sum of `bytes` (a multiple of 256) at p as 64-bit lanes, eight independent accumulators of full-width
// AVX2 loads: eight loads in flight per round, so the memory system, not the add latency, is the limit.
__attribute__((target("avx2"))) uint64_t SumBytesAvx2(const uint8_t* p, int64_t bytes) {
  __m256i acc[8];
  for (__m256i& a : acc) a = _mm256_setzero_si256();
  for (int64_t i = 0; i < bytes; i += 256) {
    for (int j = 0; j < 8; ++j) {
      acc[j] = _mm256_add_epi64(acc[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32 * j)));
    }
  }
  for (int j = 1; j < 8; ++j) acc[0] = _mm256_add_epi64(acc[0], acc[j]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[0]);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// The same without AVX2 (baseline x86-64 has 16-byte SSE2 loads; eight 64-bit chains).
uint64_t SumBytesScalar(const uint8_t* p, int64_t bytes) {
  uint64_t acc[8] = {};
  for (int64_t i = 0; i < bytes; i += 64) {
    for (int j = 0; j < 8; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, sizeof v);
      acc[j] += v;
    }
  }
  uint64_t sum = 0;
  for (uint64_t a : acc) sum += a;
  return sum;
}

// Read bandwidth: every thread of the pool sums its contiguous half (third, ...) of a 1 GiB buffer, 32
// times the largest L3 here, with full-width loads (SumBytesAvx2 where the CPU has AVX2); best of 8 passes.
// The buffer holds distinct pseudo-random words, so that no two pages are alike (a hypervisor could merge
// identical pages, zero pages in particular, and serve them from cache).
double MeasureReadBandwidth(int threads) {
  constexpr int64_t kBytes = int64_t{1} << 30;
  constexpr int64_t kGrain = int64_t{1} << 20;  // chunks of whole MiB: every slice a multiple of 256 bytes
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> buffer(static_cast<uint8_t*>(std::aligned_alloc(64, kBytes)));
  if (buffer == nullptr) return 0.0;
  uint8_t* const data = buffer.get();
  ThreadPool pool(threads);
  pool.ParallelFor(kBytes / 8, kGrain / 8, [&](int64_t b, int64_t e) {
    uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(b + 1);
    for (int64_t i = b; i < e; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;  // Knuth's MMIX LCG
      std::memcpy(data + 8 * i, &state, sizeof state);
    }
  });
  const bool avx2 = GetCpuFeatures().avx2;
  std::vector<uint64_t> sums(kBytes / kGrain);
  double best = 0;
  uint64_t sink = 0;
  for (int pass = 0; pass < 8; ++pass) {
    const Clock::time_point t0 = Clock::now();
    pool.ParallelFor(kBytes, kGrain, [&](int64_t b, int64_t e) {
      sums[b / kGrain] = avx2 ? SumBytesAvx2(data + b, e - b) : SumBytesScalar(data + b, e - b);
    });
    const Clock::time_point t1 = Clock::now();
    for (uint64_t s : sums) sink += s;
    best = std::max(best, kBytes / Seconds(t0, t1));
  }
  volatile uint64_t keep = sink;  // the sums must be computed
  (void)keep;
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
