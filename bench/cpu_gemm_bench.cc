// Throughput of the fast CPU GEMM kernels (server/backend/cpu/cpu_gemm.h) against the machine's memory read
// bandwidth, measured the same way.
//
//   BM_Gemm/<scheme>/<m>/<n>/<k>/<threads>/<cold>  counters: GB/s (weight bytes read per second), GFLOP/s
//   BM_MemoryRead/<bytes>/<threads>/<cold>         counter:  GB/s
//   BM_FmaPeak                                     counter:  GFLOP/s of one core's FMA units
//   BM_ParallelFor/<threads>/<idle_us>             time per ParallelFor of no work: the pool's dispatch
//                                                  cost, back to back (idle_us = 0) or after the workers
//                                                  idled that long (past the pool's spin: a cold wake-up)
//
// Decode (m = 1) reads every weight once per token, so its GB/s against BM_MemoryRead of the same size says
// how close to the memory roofline it runs. With cold = 1 each iteration uses the next of several copies of
// the operands that together exceed the last-level cache, so the bytes come from DRAM, as in decode of a
// model much larger than the cache; cold = 0 reuses one copy (cache-resident when it fits: the kernels'
// compute ceiling). Prefill (m = 128) is reported in GFLOP/s.
//
// Run: build/bench/cpu_gemm_bench [--benchmark_filter=...]. Numbers are noisy on a shared machine.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "server/backend/cpu/cpu_gemm.h"
#include "server/common/thread_pool.h"
#include "server/quant/bf16.h"
#include "server/quant/fp8.h"

namespace qrag::backend::cpu {
namespace {

enum Scheme : int64_t { kF32 = 0, kBf16 = 1, kFp8 = 2, kInt8 = 3 };

int64_t ElementBytes(int64_t scheme) {
  switch (scheme) {
    case kF32:
      return 4;
    case kBf16:
      return 2;
    default:
      return 1;
  }
}

// The operand copies of cold runs together hold at least this many bytes (several times any L3 here).
constexpr int64_t kColdBytes = int64_t{256} << 20;

int64_t CopiesFor(int64_t bytes, bool cold) {
  return cold ? std::max<int64_t>(1, (kColdBytes + bytes - 1) / bytes) : 1;
}

// Copy `copy` of a buffer, changed in the low byte of every 4 KiB page: no two pages of the copies are
// identical, so a hypervisor that merges identical pages cannot turn the cold runs into cache hits. (The
// values change in their last bits only; some fp8 codes may become NaN, which costs the same.)
std::vector<uint8_t> DistinctCopy(const std::vector<uint8_t>& bytes, int64_t copy) {
  std::vector<uint8_t> out = bytes;
  for (size_t p = 0; p < out.size(); p += 4096) out[p] ^= static_cast<uint8_t>(1 + copy % 127);
  return out;
}

// `count` elements of `scheme` in their storage format: fp32 in [-1, 1], bf16 of the same, finite E4M3
// codes, int8 in [-127, 127].
std::vector<uint8_t> RandomOperand(int64_t scheme, int64_t count, std::mt19937& rng) {
  std::vector<uint8_t> bytes(count * ElementBytes(scheme));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int64_t i = 0; i < count; ++i) {
    const float v = uniform(rng);
    switch (scheme) {
      case kF32:
        std::memcpy(&bytes[4 * i], &v, 4);
        break;
      case kBf16: {
        const uint16_t b = quant::FloatToBf16(v);
        std::memcpy(&bytes[2 * i], &b, 2);
        break;
      }
      case kFp8:
        bytes[i] = quant::FloatToE4M3(v * 448.0f);
        break;
      case kInt8:
        bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(v * 127.0f));
        break;
    }
  }
  return bytes;
}

absl::Status RunGemm(int64_t scheme, const uint8_t* x, const float* x_scale, int64_t m, const uint8_t* w,
                     const float* w_scale, int64_t n, int64_t k, float* y, const GemmKernelOptions& options) {
  switch (scheme) {
    case kF32:
      return GemmF32(reinterpret_cast<const float*>(x), m, reinterpret_cast<const float*>(w), n, k, nullptr, y,
                     options);
    case kBf16:
      return GemmBf16(reinterpret_cast<const uint16_t*>(x), m, reinterpret_cast<const uint16_t*>(w), n, k,
                      nullptr, y, options);
    case kFp8:
      return GemmFp8(x, x_scale, m, w, w_scale, n, k, nullptr, y, options);
    case kInt8:
      return GemmInt8(reinterpret_cast<const int8_t*>(x), x_scale, m, reinterpret_cast<const int8_t*>(w), w_scale,
                      n, k, nullptr, y, options);
  }
  return absl::InvalidArgumentError("unknown scheme");
}

void BM_Gemm(benchmark::State& state) {
  const int64_t scheme = state.range(0), m = state.range(1), n = state.range(2), k = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  const bool cold = state.range(5) != 0;
  const bool avx512 = state.range(6) != 0;  // 0: the float blocked GEMM on its AVX2 micro-kernel
  if (!CpuHasAvx2()) state.SetLabel("portable kernels (no AVX2)");
  ThreadPool pool(threads);
  std::mt19937 rng(42);
  const int64_t weight_bytes = n * k * ElementBytes(scheme);
  const int64_t copies = CopiesFor(weight_bytes, cold);
  std::vector<std::vector<uint8_t>> weights, activations;
  for (int64_t c = 0; c < copies; ++c) {
    weights.push_back(c == 0 ? RandomOperand(scheme, n * k, rng) : DistinctCopy(weights[0], c));
    activations.push_back(c == 0 ? RandomOperand(scheme, m * k, rng) : activations[0]);
  }
  std::vector<float> x_scale(m, 1.0f / 448.0f), w_scale(n, 1.0f / 448.0f), y(m * n);
  const GemmKernelOptions options{.reference = false, .pool = &pool, .allow_avx512 = avx512};
  int64_t next = 0;
  for (auto _ : state) {
    if (absl::Status s = RunGemm(scheme, activations[next].data(), x_scale.data(), m, weights[next].data(),
                                 w_scale.data(), n, k, y.data(), options);
        !s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    next = (next + 1) % copies;
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(weight_bytes) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Sum of all bytes as 64-bit lanes with four independent accumulators: the loads, not the adds, limit it.
__attribute__((target("avx2"))) uint64_t ReadAll(const uint8_t* p, int64_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  uint64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes),
                      _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < bytes; ++i) sum += p[i];
  return sum;
}

void BM_MemoryRead(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const bool cold = state.range(2) != 0;
  ThreadPool pool(threads);
  const int64_t copies = CopiesFor(bytes, cold);
  std::vector<uint8_t> first(bytes);
  uint32_t lcg = 12345;  // a linear congruential generator: distinct pages, cheaply
  for (uint8_t& b : first) b = static_cast<uint8_t>((lcg = lcg * 1664525u + 1013904223u) >> 24);
  std::vector<std::vector<uint8_t>> buffers;
  for (int64_t c = 0; c < copies; ++c) buffers.push_back(c == 0 ? first : DistinctCopy(first, c));
  int64_t next = 0;
  for (auto _ : state) {
    const uint8_t* p = buffers[next].data();
    std::atomic<uint64_t> sum{0};
    pool.ParallelFor(bytes, 1 << 16, [&](int64_t b, int64_t e) { sum += ReadAll(p + b, e - b); });
    benchmark::DoNotOptimize(sum.load());
    next = (next + 1) % copies;
  }
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The FMA roofline of one core: twelve independent chains of 8-wide FMAs (enough to cover the latency of
// two FMA ports), nothing else. Prefill GFLOP/s are best read against this rather than a nominal clock.
__attribute__((target("avx2,fma"), noipa)) float FmaChains(int64_t iterations, float seed) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  return lanes[0];
}

void BM_FmaPeak(benchmark::State& state) {
  constexpr int64_t kIterations = 1 << 20;
  int64_t iterations = kIterations;  // opaque to the optimizer, so that the chains are really run
  float seed = 1.0f;
  benchmark::DoNotOptimize(iterations);
  benchmark::DoNotOptimize(seed);
  for (auto _ : state) {
    benchmark::DoNotOptimize(seed);
    benchmark::DoNotOptimize(FmaChains(iterations, seed));
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(kIterations * 12 * 8 * 2 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The cost of handing work to the pool and getting it back: decode runs one ParallelFor per GEMM, several
// per layer and token. With idle_us > 0 the workers first sit idle that long (not timed), as between
// tokens; 100 us is past ThreadPool::kSpinBeforeBlock, so they have gone to sleep.
void BM_ParallelFor(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t idle_us = state.range(1);
  ThreadPool pool(threads);
  std::atomic<int64_t> chunks{0};
  const std::function<void(int64_t, int64_t)> fn = [&](int64_t, int64_t) {
    chunks.fetch_add(1, std::memory_order_relaxed);
  };
  for (auto _ : state) {
    if (idle_us > 0) {
      state.PauseTiming();
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(idle_us);
      while (std::chrono::steady_clock::now() < until) std::this_thread::sleep_until(until);
      state.ResumeTiming();
    }
    pool.ParallelFor(threads, 1, fn);
  }
  benchmark::DoNotOptimize(chunks.load());
}

void GemmArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"scheme", "m", "n", "k", "threads", "cold", "avx512"});
  for (int64_t scheme : {kF32, kBf16, kFp8, kInt8}) {
    for (int64_t threads : {1, 2}) {
      for (auto [n, k] : {std::pair<int64_t, int64_t>{2048, 2048}, {8192, 2048}}) {
        for (int64_t cold : {1, 0}) b->Args({scheme, 1, n, k, threads, cold, 1});
      }
      for (int64_t avx512 : {0, 1}) b->Args({scheme, 128, 2048, 2048, threads, 0, avx512});
    }
    // Small batches (several sequences decoding together), across the switch from dot to blocked kernels.
    for (int64_t m : {2, 4, 8, 16, 32}) b->Args({scheme, m, 2048, 2048, 1, 1, 1});
    // Prefill at the largest batch the engine builds.
    for (int64_t avx512 : {0, 1}) b->Args({scheme, 512, 2048, 2048, 2, 0, avx512});
    // The RAG encoder (all-MiniLM-L6-v2, hidden 384, FFN 1536) over a 256-token document.
    for (auto [n, k] : {std::pair<int64_t, int64_t>{384, 384}, {1536, 384}, {384, 1536}}) {
      for (int64_t avx512 : {0, 1}) b->Args({scheme, 256, n, k, 1, 0, avx512});
    }
  }
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void MemoryArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"bytes", "threads", "cold"});
  for (int64_t threads : {1, 2}) {
    for (int64_t bytes :
         {int64_t{4} << 20, int64_t{8} << 20, int64_t{16} << 20, int64_t{32} << 20, int64_t{64} << 20}) {
      for (int64_t cold : {1, 0}) b->Args({bytes, threads, cold});
    }
  }
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Gemm)->Apply(GemmArgs);
BENCHMARK(BM_MemoryRead)->Apply(MemoryArgs);
BENCHMARK(BM_FmaPeak)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ParallelFor)
    ->ArgNames({"threads", "idle_us"})
    ->ArgsProduct({{2}, {0, 100}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace qrag::backend::cpu

BENCHMARK_MAIN();
