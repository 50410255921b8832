// The reference GEMM kernels (the oracle), the portable fast kernels, and the dispatch and threading of the
// fast path. The AVX2 kernels live in cpu_gemm_avx2.cc, the only file that uses AVX2/FMA/F16C; they are
// called only after the run-time CPU check of CpuHasAvx2().
#include "server/backend/cpu/cpu_gemm.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/cpu_features.h"
#include "server/quant/bf16.h"
#include "server/quant/fp8.h"

namespace qrag::backend::cpu {
namespace internal {

// Defined in cpu_gemm_avx2.cc. Each computes the block y[m_begin:m_end, n_begin:n_end] (row stride n) of
// its scheme over the whole k, with the epilogue of cpu_gemm.h. Int8 requires k <= kMaxAvx2Int8K. False when
// the calling thread's packing scratch could not be allocated (nothing reliable was written).
[[nodiscard]] bool Avx2GemmF32(const float* x, const float* w, const float* bias, float* y, int64_t n, int64_t k,
                 int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, bool avx512);
[[nodiscard]] bool Avx2GemmBf16(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t n, int64_t k,
                  int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, bool avx512);
[[nodiscard]] bool Avx2GemmFp8(const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale,
                 const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                 int64_t n_begin, int64_t n_end, bool avx512);
[[nodiscard]] bool Avx2GemmInt8(const int8_t* x, const float* x_scale, const int8_t* w, const float* w_scale,
                  const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                  int64_t n_begin, int64_t n_end);

}  // namespace internal

namespace {

// The AVX2 int8 kernels keep the whole dot product in int32 lanes: |x * w| <= 2^14, so k * 2^14 must stay
// below 2^31. Longer rows (far beyond any model dimension) take the portable path, which carries into int64.
constexpr int64_t kMaxAvx2Int8K = (int64_t{1} << 17) - 1;

// Threading: each task gets at least this many multiply-adds, so that handing it to a worker stays small
// against the work: well under a microsecond while the pool's workers spin between back-to-back calls,
// tens of microseconds to wake one that has gone to sleep (thread_pool.h).
constexpr int64_t kMinMacsPerTask = int64_t{1} << 18;
// Output columns are handed out in multiples of the AVX2 kernels' weight panel width, and rows in multiples
// of their activation panel heights (6 rows, int8 4), so that no panel straddles two threads. (Any split
// gives the same bits: every element's accumulation order is fixed, cpu_gemm.h.)
constexpr int64_t kColumnGrain = 16;
constexpr int64_t kRowGrain = 12;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }

// Calls fn(m_begin, m_end, n_begin, n_end) over blocks of the [m, n] output that cover it exactly once,
// spread over the pool. The split is over n (output features: every thread streams its own share of the
// weights, which is what decode is bound by); only when n is too narrow to give every thread work are the
// rows split instead.
// fn returns false when it could not get its packing memory; then the GEMM is RESOURCE_EXHAUSTED.
template <typename Fn>
absl::Status ForEachBlock(int64_t m, int64_t n, int64_t k, ThreadPool* pool, const Fn& fn) {
  std::atomic<bool> ok{true};
  auto run = [&](int64_t mb, int64_t me, int64_t nb, int64_t ne) {
    if (!fn(mb, me, nb, ne)) ok.store(false, std::memory_order_relaxed);
  };
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  if (threads <= 1 || m * n * k < 2 * kMinMacsPerTask) {
    run(int64_t{0}, m, int64_t{0}, n);
  } else if (const int64_t grain_n = RoundUp(std::max(kColumnGrain, CeilDiv(kMinMacsPerTask, m * k)), kColumnGrain);
             CeilDiv(n, grain_n) >= threads || m < 2 * kRowGrain) {
    pool->ParallelFor(n, grain_n, [&](int64_t b, int64_t e) { run(int64_t{0}, m, b, e); });
  } else {
    const int64_t grain_m = RoundUp(std::max(kRowGrain, CeilDiv(kMinMacsPerTask, n * k)), kRowGrain);
    pool->ParallelFor(m, grain_m, [&](int64_t b, int64_t e) { run(b, e, int64_t{0}, n); });
  }
  if (ok.load()) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("CPU GEMM [", m, " x ", k, "] x [", n, " x ", k,
                                                   "]: out of memory for a worker thread's packing buffers"));
}

// ---- Epilogues (cpu_gemm.h): shared by the reference and the portable path so both round alike. ----

float UnscaledEpilogue(float acc, const float* bias, int64_t j) {
  return bias != nullptr ? acc + bias[j] : acc;
}

float ScaledEpilogue(float acc, const float* x_scale, const float* w_scale, const float* bias, int64_t i,
                     int64_t j) {
  const float s = x_scale[i] * w_scale[j];
  return bias != nullptr ? std::fma(acc, s, bias[j]) : acc * s;
}

// ---- Reference kernels: plain loops, double accumulation (int8: int64), the oracle. ----

// E4M3 code -> value; a table so that the portable kernels decode at the speed of a load.
const std::array<float, 256>& E4M3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = quant::E4M3ToFloat(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

template <typename T, typename ValueFn, typename EpilogueFn>
void ReferenceFloat(const T* x, int64_t m, const T* w, int64_t n, int64_t k, float* y, ValueFn value,
                    EpilogueFn epilogue) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        acc += static_cast<double>(value(x[i * k + p])) * static_cast<double>(value(w[j * k + p]));
      }
      y[i * n + j] = epilogue(static_cast<float>(acc), i, j);
    }
  }
}

// ---- Portable fast kernels: decode to fp32 (int8 stays integer), blocked dot products. ----

// Weight rows decoded per block; with the activations decoded once, each block is reused by every row.
constexpr int64_t kPortableRows = 8;

// The canonical order of cpu_gemm.h: eight lanes, lane l takes the products p = l (mod 8) in increasing p
// with one FMA each, then the fixed tree. `a` and `b` hold kp = k rounded up to 8 elements, zero padded.
// std::fma is a call here (the baseline x86-64 has no FMA instruction; glibc picks the hardware one at run
// time where it exists): the portable path is the fallback for machines without AVX2, and it must round
// exactly like the AVX2 kernels.
float CanonicalDot(const float* a, const float* b, int64_t kp) {
  float acc[8] = {};
  for (int64_t p = 0; p < kp; p += 8) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(a[p + l], b[p + l], acc[l]);
  }
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// Exact int8 dot product: int32 partial sums over chunks short enough never to overflow, carried into int64.
int64_t DotInt8(const int8_t* a, const int8_t* b, int64_t k) {
  constexpr int64_t kChunk = int64_t{1} << 16;  // each of 8 lanes sums <= 2^13 products of <= 2^14
  int64_t total = 0;
  for (int64_t c0 = 0; c0 < k; c0 += kChunk) {
    const int64_t c1 = std::min(k, c0 + kChunk);
    int32_t acc[8] = {};
    int64_t p = c0;
    for (; p + 8 <= c1; p += 8) {
      for (int l = 0; l < 8; ++l) acc[l] += int32_t{a[p + l]} * int32_t{b[p + l]};
    }
    for (; p < c1; ++p) acc[p & 7] += int32_t{a[p]} * int32_t{b[p]};
    int64_t sum = 0;
    for (int l = 0; l < 8; ++l) sum += acc[l];
    total += sum;
  }
  return total;
}

// One output block of a float scheme: `decode_x` / `decode_w` (src, count, dst) turn `count` activations /
// weights into fp32; rows are zero padded to a multiple of 8 (the canonical padding).
template <typename T, typename DecodeXFn, typename DecodeWFn, typename EpilogueFn>
void PortableFloatBlock(const T* x, const T* w, float* y, int64_t n, int64_t k, int64_t m_begin,
                        int64_t m_end, int64_t n_begin, int64_t n_end, DecodeXFn decode_x, DecodeWFn decode_w,
                        EpilogueFn epilogue) {
  const int64_t kp = (k + 7) / 8 * 8;
  std::vector<float> xf((m_end - m_begin) * kp, 0.0f);
  std::vector<float> wf(kPortableRows * kp, 0.0f);
  for (int64_t i = m_begin; i < m_end; ++i) decode_x(x + i * k, k, xf.data() + (i - m_begin) * kp);
  for (int64_t j0 = n_begin; j0 < n_end; j0 += kPortableRows) {
    const int64_t rows = std::min(kPortableRows, n_end - j0);
    for (int64_t r = 0; r < rows; ++r) decode_w(w + (j0 + r) * k, k, wf.data() + r * kp);
    for (int64_t i = m_begin; i < m_end; ++i) {
      const float* xi = xf.data() + (i - m_begin) * kp;
      for (int64_t r = 0; r < rows; ++r) {
        y[i * n + j0 + r] = epilogue(CanonicalDot(xi, wf.data() + r * kp, kp), i, j0 + r);
      }
    }
  }
}

// The fast fp8 kernels read a NaN weight code as +-480, the value the AVX2 decode (the half trick) gives
// it, so that the portable path agrees with them bit for bit (cpu_gemm.h).
const std::array<float, 256>& E4M3WeightTable() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t = E4M3Table();
    t[0x7f] = 480.0f;
    t[0xff] = -480.0f;
    return t;
  }();
  return table;
}

// A NaN activation code makes its whole output row NaN in every fast path (the reference gets there by
// arithmetic): the rows [m_begin, m_end) x [n_begin, n_end) of x rows holding one are overwritten.
void PropagateFp8ActivationNaNs(const uint8_t* x, int64_t k, float* y, int64_t n, int64_t m_begin,
                                int64_t m_end, int64_t n_begin, int64_t n_end) {
  for (int64_t i = m_begin; i < m_end; ++i) {
    bool has_nan = false;
    for (int64_t p = 0; p < k; ++p) has_nan |= (x[i * k + p] & 0x7f) == 0x7f;
    if (!has_nan) continue;
    std::fill(y + i * n + n_begin, y + i * n + n_end, std::numeric_limits<float>::quiet_NaN());
  }
}

}  // namespace

bool CpuHasAvx512() {
  static const bool has = CpuHasAvx2() && GetCpuFeatures().avx512f;
  return has;
}

bool CpuHasAvx2() {
  const CpuFeatures& cpu = GetCpuFeatures();
  static const bool has = cpu.avx2 && cpu.fma && cpu.f16c;
  return has;
}

absl::Status GemmF32(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias, float* y,
             const GemmKernelOptions& options) {
  auto epilogue = [bias](float acc, int64_t /*i*/, int64_t j) { return UnscaledEpilogue(acc, bias, j); };
  if (options.reference) {
    ReferenceFloat(
        x, m, w, n, k, y, [](float v) { return v; }, epilogue);
    return absl::OkStatus();
  }
  const bool avx2 = options.allow_avx2 && CpuHasAvx2();
  const bool avx512 = avx2 && options.allow_avx512 && CpuHasAvx512();
  return ForEachBlock(m, n, k, options.pool, [&](int64_t mb, int64_t me, int64_t nb, int64_t ne) {
    if (avx2) return internal::Avx2GemmF32(x, w, bias, y, n, k, mb, me, nb, ne, avx512);
    auto copy = [](const float* src, int64_t count, float* dst) { std::copy(src, src + count, dst); };
    PortableFloatBlock(x, w, y, n, k, mb, me, nb, ne, copy, copy, epilogue);
    return true;
  });
}

absl::Status GemmBf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k, const float* bias,
              float* y, const GemmKernelOptions& options) {
  auto epilogue = [bias](float acc, int64_t /*i*/, int64_t j) { return UnscaledEpilogue(acc, bias, j); };
  if (options.reference) {
    ReferenceFloat(x, m, w, n, k, y, quant::Bf16ToFloat, epilogue);
    return absl::OkStatus();
  }
  const bool avx2 = options.allow_avx2 && CpuHasAvx2();
  const bool avx512 = avx2 && options.allow_avx512 && CpuHasAvx512();
  return ForEachBlock(m, n, k, options.pool, [&](int64_t mb, int64_t me, int64_t nb, int64_t ne) {
    if (avx2) return internal::Avx2GemmBf16(x, w, bias, y, n, k, mb, me, nb, ne, avx512);
    auto decode = [](const uint16_t* src, int64_t count, float* dst) {
      for (int64_t p = 0; p < count; ++p) dst[p] = quant::Bf16ToFloat(src[p]);
    };
    PortableFloatBlock(x, w, y, n, k, mb, me, nb, ne, decode, decode, epilogue);
    return true;
  });
}

absl::Status GemmFp8(const uint8_t* x, const float* x_scale, int64_t m, const uint8_t* w, const float* w_scale,
             int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options) {
  auto epilogue = [=](float acc, int64_t i, int64_t j) {
    return ScaledEpilogue(acc, x_scale, w_scale, bias, i, j);
  };
  const std::array<float, 256>& table = E4M3Table();
  if (options.reference) {
    ReferenceFloat(
        x, m, w, n, k, y, [](uint8_t v) { return quant::E4M3ToFloat(v); }, epilogue);
    return absl::OkStatus();
  }
  const std::array<float, 256>& weight_table = E4M3WeightTable();
  const bool avx2 = options.allow_avx2 && CpuHasAvx2();
  const bool avx512 = avx2 && options.allow_avx512 && CpuHasAvx512();
  return ForEachBlock(m, n, k, options.pool, [&](int64_t mb, int64_t me, int64_t nb, int64_t ne) {
    if (avx2) {
      if (!internal::Avx2GemmFp8(x, x_scale, w, w_scale, bias, y, n, k, mb, me, nb, ne, avx512)) return false;
    } else {
      auto decode_x = [&table](const uint8_t* src, int64_t count, float* dst) {
        for (int64_t p = 0; p < count; ++p) dst[p] = table[src[p]];
      };
      auto decode_w = [&weight_table](const uint8_t* src, int64_t count, float* dst) {
        for (int64_t p = 0; p < count; ++p) dst[p] = weight_table[src[p]];
      };
      PortableFloatBlock(x, w, y, n, k, mb, me, nb, ne, decode_x, decode_w, epilogue);
    }
    PropagateFp8ActivationNaNs(x, k, y, n, mb, me, nb, ne);
    return true;
  });
}

absl::Status GemmInt8(const int8_t* x, const float* x_scale, int64_t m, const int8_t* w, const float* w_scale,
              int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options) {
  if (options.reference) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        int64_t acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += int64_t{x[i * k + p]} * int64_t{w[j * k + p]};
        y[i * n + j] = ScaledEpilogue(static_cast<float>(acc), x_scale, w_scale, bias, i, j);
      }
    }
    return absl::OkStatus();
  }
  const bool avx2 = options.allow_avx2 && CpuHasAvx2() && k <= kMaxAvx2Int8K;
  return ForEachBlock(m, n, k, options.pool, [&](int64_t mb, int64_t me, int64_t nb, int64_t ne) {
    if (avx2) return internal::Avx2GemmInt8(x, x_scale, w, w_scale, bias, y, n, k, mb, me, nb, ne);
    // Weight row outer: it stays in cache for every activation row.
    for (int64_t j = nb; j < ne; ++j) {
      for (int64_t i = mb; i < me; ++i) {
        const float acc = static_cast<float>(DotInt8(x + i * k, w + j * k, k));
        y[i * n + j] = ScaledEpilogue(acc, x_scale, w_scale, bias, i, j);
      }
    }
    return true;
  });
}

}  // namespace qrag::backend::cpu
