// AVX2/FMA/F16C GEMM kernels of the fast CPU path (cpu_gemm.h). The instruction sets are enabled for this
// file's own functions (see the pragma below); cpu_gemm.cc calls them only after CpuHasAvx2().
//
// Two shapes of work, both over the full k for a block of the output:
//  - few activation rows (decode, small batches): "dot" kernels read the weight rows one after another as a
//    single sequential stream, decode each step in registers and take dot products with up to four
//    activation rows that were decoded once into fp32 (int16 for int8); more rows go in groups of four
//    over L2-sized blocks of weight rows. Decode is memory-bound: the decode must cost less than the
//    bytes take to arrive.
//  - many rows (prefill): a GotoBLAS/BLIS-style blocked GEMM. Activations are decoded and packed per
//    k-block into panels of kMr rows (k-major), weights into panels of kNr = 16 columns (k-major) that stay
//    in L1 while every activation panel streams past them; a kMr x 16 register tile accumulates with FMA
//    (int8: vpmaddwd on int16 pairs, exact int32).
//
// Exactness: fp8 and bf16 products are exact in fp32, int8 sums are exact in int32 (cpu_gemm.cc keeps
// k < 2^17), and the epilogue performs the same fp32 operations in the same order as the reference (an
// explicit fma, never a contraction chosen by the compiler), so integer-valued inputs give bit-identical
// outputs and int8 always does.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>

#include "server/quant/fp8.h"

// The instruction sets are enabled here, after the includes, for the functions of this file only. The
// per-file -mavx2 -mfma -mf16c of backend/CMakeLists.txt does not reach this file: source properties are
// scoped to the directory that sets them, and qrag_core is created in server/. Enabling them only for our
// own functions also keeps any library template instantiated here (a comdat the linker may pick for other
// callers) free of AVX2 instructions.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace qrag::backend::cpu::internal {
namespace {

// ---------------------------------------------------------------------------------------------------
// Tuning constants.

// Up to this many activation rows take the dot kernels, more the blocked GEMM (the formats' kDotMaxRows
// below). Measured with bench/cpu_gemm_bench.cc at n = k = 2048 from DRAM: packing the weights pays for
// itself from 5 rows for fp32, whose dot kernel is load-bound; the dot kernels of the formats that decode
// (bf16, fp8) or widen (int8) the weights stay ahead to 8, 16 and 16 rows.
constexpr int64_t kDotMaxRowsInt8 = 16;
// Blocked GEMM: register tile kMr x kNr, k-block of kKc elements (a 16 x 256 fp32 weight panel is 16 KiB,
// half of L1; the int8 panel of 16 x 512 int16 pairs is the same size).
constexpr int kMr = 6;
constexpr int kMrInt8 = 4;  // int8 needs a temporary per vpmaddwd: 6 rows spill the 16 ymm registers
constexpr int kNr = 16;
constexpr int64_t kKcFloat = 256;
constexpr int64_t kKcInt8 = 512;

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// ---------------------------------------------------------------------------------------------------
// Per-thread scratch: 64-byte aligned, grown on demand and kept. The pool's threads live as long as the
// backend, so packing buffers are allocated once rather than per call.

class Scratch {
 public:
  template <typename T>
  T* Get(int64_t count) {
    const size_t bytes = static_cast<size_t>(RoundUp(std::max<int64_t>(count, 1) * sizeof(T), 64));
    if (bytes > capacity_) {
      data_.reset(static_cast<char*>(std::aligned_alloc(64, bytes)));
      if (data_ == nullptr) std::abort();  // out of memory
      capacity_ = bytes;
    }
    return reinterpret_cast<T*>(data_.get());
  }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
  size_t capacity_ = 0;
};

enum ScratchSlot { kSlotX, kSlotW, kSlotC, kNumSlots };

Scratch& ThreadScratch(ScratchSlot slot) {
  thread_local std::array<Scratch, kNumSlots> scratch;
  return scratch[slot];
}

// Calls fn(std::integral_constant<int, rows>) for rows in [1, kMaxRows], so tile heights are compile-time.
template <int kMaxRows, int kRows = 1, typename Fn>
void DispatchRows(int64_t rows, Fn&& fn) {
  if constexpr (kRows > kMaxRows) {
    std::abort();
  } else if (rows == kRows) {
    fn(std::integral_constant<int, kRows>{});
  } else {
    DispatchRows<kMaxRows, kRows + 1>(rows, std::forward<Fn>(fn));
  }
}

// ---------------------------------------------------------------------------------------------------
// Small vector helpers.

float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// In-register transpose: afterwards r[j][i] is the former r[i][j].
void Transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// ---------------------------------------------------------------------------------------------------
// Number formats. E4M3 decoding uses the IEEE half trick: a code's bits placed as s.0eeee.mmm0000000
// (sign to bit 15, exponent and mantissa shifted left by 7) form a binary16 whose value is the E4M3 value
// times 2^-8, for every finite code including subnormals, since both formats are sign-magnitude with the
// same mantissa alignment and the exponent biases differ by 8 (OCP OFP8 v1.0: bias 7; IEEE 754 binary16:
// bias 15). F16C converts eight of them per instruction. The NaN code S.1111.111 becomes 1.875 * 2^0, i.e.
// 480 after rescaling (cpu_gemm.h: weights must be finite; activation NaNs are handled separately).

// Half-trick bits of each E4M3 code in a vector of sign-extended 16-bit lanes.
__m128i E4M3LanesToHalf(__m128i sign_extended) {
  return _mm_and_si128(_mm_slli_epi16(sign_extended, 7), _mm_set1_epi16(static_cast<short>(0xbf80)));
}

float E4M3HalfTrickScalar(uint8_t code) {  // value * 2^-8, bit-identical to the vector decode
  const uint16_t sign_extended = static_cast<uint16_t>(static_cast<int16_t>(static_cast<int8_t>(code)));
  return _cvtsh_ss(static_cast<uint16_t>((sign_extended << 7) & 0xbf80u));
}

// The true values of the E4M3 codes (NaN included), for packing activations.
const std::array<float, 256>& E4M3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = quant::E4M3ToFloat(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

// A float format, seen by the kernels through:
//  - kDotMaxRows: the most activation rows for which the dot kernels beat the blocked GEMM.
//  - kStep / DecodeStep: 32 elements decoded into four vectors. The lanes may come out permuted
//    (bf16: even then odd elements); the dot kernels decode activations with the same function, so the
//    permutation cancels in the dot product.
//  - kDotScale: the factor the dot-kernel accumulator carries (fp8: 2^-8 per operand), undone exactly.
//  - DecodeRow8 / DecodeWeight: eight consecutive elements / one element in order, true value (packing).
//  - DecodeActivation: one element, true value with NaN preserved (activation packing).
struct F32Format {
  using T = float;
  static constexpr int64_t kDotMaxRows = 4;
  static constexpr int kStep = 32;
  static constexpr float kDotScale = 1.0f;
  static void DecodeStep(const float* p, __m256* v) {
    for (int t = 0; t < 4; ++t) v[t] = _mm256_loadu_ps(p + 8 * t);
  }
  static __m256 DecodeRow8(const float* p) { return _mm256_loadu_ps(p); }
  static float DecodeWeight(float v) { return v; }
  static float DecodeActivation(float v) { return v; }
};

struct Bf16Format {
  using T = uint16_t;
  static constexpr int64_t kDotMaxRows = 8;
  static constexpr int kStep = 32;
  static constexpr float kDotScale = 1.0f;
  // bf16 is the upper half of an fp32: the even elements shifted up, the odd ones masked in place.
  static void DecodeStep(const uint16_t* p, __m256* v) {
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    for (int h = 0; h < 2; ++h) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 * h));
      v[2 * h] = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
      v[2 * h + 1] = _mm256_castsi256_ps(_mm256_and_si256(raw, high));
    }
  }
  static __m256 DecodeRow8(const uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  static float DecodeWeight(uint16_t v) {
    const uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static float DecodeActivation(uint16_t v) { return DecodeWeight(v); }
};

struct Fp8Format {
  using T = uint8_t;
  static constexpr int64_t kDotMaxRows = 16;
  static constexpr int kStep = 32;
  static constexpr float kDotScale = 65536.0f;  // both operands decoded as value * 2^-8
  // 32 codes; 16-bit lane j holds code 2j (low byte) and 2j+1 (high byte). An arithmetic shift right by one
  // of the lane (or of the lane shifted up by 8) puts a byte's sign in bits 15 and 14 and its other seven
  // bits in 13..7; the mask 0xbf80 keeps sign, exponent and mantissa: the half-trick bits, in five integer
  // ops for all 32 codes.
  static void DecodeStep(const uint8_t* p, __m256* v) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i mask = _mm256_set1_epi16(static_cast<short>(0xbf80));
    const __m256i even = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(raw, 8), 1), mask);
    const __m256i odd = _mm256_and_si256(_mm256_srai_epi16(raw, 1), mask);
    v[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(even));
    v[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(even, 1));
    v[2] = _mm256_cvtph_ps(_mm256_castsi256_si128(odd));
    v[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(odd, 1));
  }
  static __m256 DecodeRow8(const uint8_t* p) {
    const __m128i codes = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_mul_ps(_mm256_cvtph_ps(E4M3LanesToHalf(codes)), _mm256_set1_ps(256.0f));
  }
  static float DecodeWeight(uint8_t v) { return E4M3HalfTrickScalar(v) * 256.0f; }
  static float DecodeActivation(uint8_t v) { return E4M3Table()[v]; }
};

// ---------------------------------------------------------------------------------------------------
// Epilogues (cpu_gemm.h), as a vector over eight columns and as a scalar; both do the same fp32
// operations so that edge columns round exactly like full vectors.

struct UnscaledEpilogue {
  const float* bias;
  __m256 Vector(__m256 acc, int64_t /*i*/, int64_t j) const {
    return bias != nullptr ? _mm256_add_ps(acc, _mm256_loadu_ps(bias + j)) : acc;
  }
  float Scalar(float acc, int64_t /*i*/, int64_t j) const { return bias != nullptr ? acc + bias[j] : acc; }
};

struct ScaledEpilogue {
  const float* x_scale;
  const float* w_scale;
  const float* bias;
  __m256 Vector(__m256 acc, int64_t i, int64_t j) const {
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(x_scale[i]), _mm256_loadu_ps(w_scale + j));
    return bias != nullptr ? _mm256_fmadd_ps(acc, s, _mm256_loadu_ps(bias + j)) : _mm256_mul_ps(acc, s);
  }
  float Scalar(float acc, int64_t i, int64_t j) const {
    const float s = x_scale[i] * w_scale[j];
    return bias != nullptr ? std::fma(acc, s, bias[j]) : acc * s;
  }
};

// ---------------------------------------------------------------------------------------------------
// Dot kernels (few activation rows).
//
// Each weight row is read once, front to back, and the rows one after another: weight rows are adjacent,
// so this is a single sequential stream, which the hardware prefetchers follow at DRAM bandwidth.
// (Interleaving several weight rows to share the activation loads splits it into streams one row long, 32
// cache lines for int8 at k = 2048, and halved the cold-cache bandwidth in bench/cpu_gemm_bench.cc.) The
// activations are decoded once and reread from L1/L2 for every weight row; each decoded weight step feeds
// up to four activation rows.
//
// With two or more activation rows the stream is also prefetched in software, this far ahead, once per
// 64-byte line, into L2 (into L1 the lines evicted the activation rows): the hardware prefetcher alone left
// DRAM idle once the kernel's compute rate came close to the memory rate (int8 with two rows ran at a third
// of its hot speed), while with one row it keeps up and the extra prefetches cost some 15%.
constexpr int64_t kDotPrefetchBytes = 4096;

template <typename T>
void PrefetchAhead(const T* p, int64_t extra_bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kDotPrefetchBytes + extra_bytes, _MM_HINT_T1);
}

// Weight rows per block of the dot kernels: with more than four activation rows, each group of four streams
// the block again, so it is sized to come back from L2 (half of it) rather than from DRAM.
constexpr int64_t kDotWeightBlockBytes = 512 << 10;
int64_t DotWeightBlock(int64_t k, int64_t element_bytes) {
  return std::max<int64_t>(1, kDotWeightBlockBytes / (k * element_bytes));
}

// Independent accumulators per activation row: with one activation row, four chains cover the FMA latency;
// with more rows the rows themselves supply independent chains, and registers run out.
template <int kM>
constexpr int kDotChains = kM <= 2 ? 4 : 2;

// Decodes activation rows [m_begin, m_end) with the weights' DecodeStep into rows of kp floats (kp = k
// rounded up to kStep, zero padded), in the same lane order the weights will have.
template <class F>
void DecodeDotRows(const typename F::T* x, int64_t k, int64_t m_begin, int64_t m_end, int64_t kp,
                   float* out) {
  using T = typename F::T;
  const int64_t k_full = k - k % F::kStep;
  for (int64_t i = m_begin; i < m_end; ++i) {
    const T* row = x + i * k;
    float* dst = out + (i - m_begin) * kp;
    __m256 v[4];
    for (int64_t s = 0; s < k_full; s += F::kStep) {
      F::DecodeStep(row + s, v);
      for (int t = 0; t < 4; ++t) _mm256_storeu_ps(dst + s + 8 * t, v[t]);
    }
    if (k_full < k) {
      T tail[F::kStep] = {};
      std::memcpy(tail, row + k_full, (k - k_full) * sizeof(T));
      F::DecodeStep(tail, v);
      for (int t = 0; t < 4; ++t) _mm256_storeu_ps(dst + k_full + 8 * t, v[t]);
    }
  }
}

// out[i] = (decoded) dot(x row i, w) for kM activation rows (row stride kp). The weight tail (k % kStep) is
// copied to a zero-padded step so that it decodes, and permutes, exactly like the activations' padded tail.
template <class F, int kM>
void DotRow(const float* xd, int64_t kp, const typename F::T* w, int64_t k, float (&out)[kM]) {
  using T = typename F::T;
  constexpr int kChains = kDotChains<kM>;
  const int64_t k_full = k - k % F::kStep;
  __m256 acc[kM][kChains];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm256_setzero_ps();
  }
  auto step = [&](const T* src, int64_t s) {
    __m256 v[4];
    F::DecodeStep(src, v);
    for (int i = 0; i < kM; ++i) {
      for (int t = 0; t < 4; ++t) {
        acc[i][t % kChains] =
            _mm256_fmadd_ps(v[t], _mm256_loadu_ps(xd + i * kp + s + 8 * t), acc[i][t % kChains]);
      }
    }
  };
  // Steps per 64-byte line, each line prefetched kDotPrefetchBytes ahead (see kDotPrefetchBytes).
  constexpr int kLine = std::max<int>(1, 64 / static_cast<int>(F::kStep * sizeof(T)));
  constexpr int kPrefetchesPerStep = std::max<int>(1, static_cast<int>(F::kStep * sizeof(T)) / 64);
  int64_t s = 0;
  for (; s + kLine * F::kStep <= k_full; s += kLine * F::kStep) {
    if constexpr (kM > 1) {
      for (int p = 0; p < kPrefetchesPerStep; ++p) PrefetchAhead(w + s, 64 * p);
    }
    for (int u = 0; u < kLine; ++u) step(w + s + u * F::kStep, s + u * F::kStep);
  }
  for (; s < k_full; s += F::kStep) step(w + s, s);
  if (k_full < k) {
    T tail[F::kStep] = {};
    std::memcpy(tail, w + k_full, (k - k_full) * sizeof(T));
    step(tail, k_full);
  }
  for (int i = 0; i < kM; ++i) {
    for (int c = 1; c < kChains; ++c) acc[i][0] = _mm256_add_ps(acc[i][0], acc[i][c]);
    out[i] = HorizontalSum(acc[i][0]);
  }
}

template <class F, class Epilogue>
void DotGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k, int64_t m_begin,
             int64_t m_end, int64_t n_begin, int64_t n_end, const Epilogue& epilogue) {
  const int64_t kp = RoundUp(k, F::kStep);
  float* xd = ThreadScratch(kSlotX).Get<float>((m_end - m_begin) * kp);
  DecodeDotRows<F>(x, k, m_begin, m_end, kp, xd);
  const int64_t block = DotWeightBlock(k, sizeof(typename F::T));
  for (int64_t j0 = n_begin; j0 < n_end; j0 += block) {
    const int64_t j1 = std::min(n_end, j0 + block);
    for (int64_t i0 = m_begin; i0 < m_end; i0 += 4) {
      DispatchRows<4>(std::min<int64_t>(4, m_end - i0), [&](auto rows) {
        constexpr int kM = decltype(rows)::value;
        const float* xi = xd + (i0 - m_begin) * kp;
        for (int64_t j = j0; j < j1; ++j) {
          float out[kM];
          DotRow<F, kM>(xi, kp, w + j * k, k, out);
          for (int i = 0; i < kM; ++i) {
            y[(i0 + i) * n + j] = epilogue.Scalar(out[i] * F::kDotScale, i0 + i, j);
          }
        }
      });
    }
  }
}

// int8 rows widened to int16 (zero padded to a multiple of 32) for vpmaddwd.
void WidenInt8Rows(const int8_t* x, int64_t k, int64_t m_begin, int64_t m_end, int64_t kp, int16_t* out) {
  for (int64_t i = m_begin; i < m_end; ++i) {
    int16_t* dst = out + (i - m_begin) * kp;
    for (int64_t p = 0; p < k; ++p) dst[p] = x[i * k + p];
    for (int64_t p = k; p < kp; ++p) dst[p] = 0;
  }
}

// Exact int8 dot products, 32 weights per step: sign-extend to int16, vpmaddwd against the widened
// activations (pairs of products summed into int32 lanes: |a*b + c*d| <= 2^15, no saturation), add into
// two int32 accumulators per row.
template <int kM>
void DotRowInt8(const int16_t* xd, int64_t kp, const int8_t* w, int64_t k, int32_t (&out)[kM]) {
  const int64_t k_full = k - k % 32;
  __m256i acc[kM][2];
  for (auto& row : acc) row[0] = row[1] = _mm256_setzero_si256();
  auto step = [&](const int8_t* src, int64_t s) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16)));
    for (int i = 0; i < kM; ++i) {
      const int16_t* xs = xd + i * kp + s;
      // (product, accumulator) operand order: the other way round GCC adds a register move per add.
      acc[i][0] = _mm256_add_epi32(
          _mm256_madd_epi16(w0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs))), acc[i][0]);
      acc[i][1] = _mm256_add_epi32(
          _mm256_madd_epi16(w1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 16))), acc[i][1]);
    }
  };
  int64_t s = 0;
  for (; s + 64 <= k_full; s += 64) {
    if constexpr (kM > 1) PrefetchAhead(w + s, 0);
    step(w + s, s);
    step(w + s + 32, s + 32);
  }
  for (; s < k_full; s += 32) step(w + s, s);
  if (k_full < k) {
    int8_t tail[32] = {};
    std::memcpy(tail, w + k_full, k - k_full);
    step(tail, k_full);
  }
  for (int i = 0; i < kM; ++i) out[i] = HorizontalSum(_mm256_add_epi32(acc[i][0], acc[i][1]));
}

void DotGemmInt8(const int8_t* x, const int8_t* w, float* y, int64_t n, int64_t k, int64_t m_begin,
                 int64_t m_end, int64_t n_begin, int64_t n_end, const ScaledEpilogue& epilogue) {
  const int64_t kp = RoundUp(k, 32);
  int16_t* xd = ThreadScratch(kSlotX).Get<int16_t>((m_end - m_begin) * kp);
  WidenInt8Rows(x, k, m_begin, m_end, kp, xd);
  const int64_t block = DotWeightBlock(k, sizeof(int8_t));
  for (int64_t j0 = n_begin; j0 < n_end; j0 += block) {
    const int64_t j1 = std::min(n_end, j0 + block);
    for (int64_t i0 = m_begin; i0 < m_end; i0 += 4) {
      DispatchRows<4>(std::min<int64_t>(4, m_end - i0), [&](auto rows) {
        constexpr int kM = decltype(rows)::value;
        const int16_t* xi = xd + (i0 - m_begin) * kp;
        for (int64_t j = j0; j < j1; ++j) {
          int32_t out[kM];
          DotRowInt8<kM>(xi, kp, w + j * k, k, out);
          for (int i = 0; i < kM; ++i) {
            y[(i0 + i) * n + j] = epilogue.Scalar(static_cast<float>(out[i]), i0 + i, j);
          }
        }
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Blocked GEMM, float formats.

// Activation panels of the k-block [kb, kb + kc): panel p holds rows [m_begin + kMr p, ... + h) as
// dst[kk * h + r], h = min(kMr, rows left), so a panel starts at (its first row - m_begin) * kc.
template <class F>
void PackActivations(const typename F::T* x, int64_t k, int64_t m_begin, int64_t m_end, int64_t kb,
                     int64_t kc, float* dst) {
  for (int64_t i0 = m_begin; i0 < m_end; i0 += kMr) {
    const int64_t h = std::min<int64_t>(kMr, m_end - i0);
    float* panel = dst + (i0 - m_begin) * kc;
    for (int64_t r = 0; r < h; ++r) {
      const typename F::T* row = x + (i0 + r) * k + kb;
      for (int64_t kk = 0; kk < kc; ++kk) panel[kk * h + r] = F::DecodeActivation(row[kk]);
    }
  }
}

// The weight panel of columns [j0, j0 + cols) (cols <= 16, the rest zero) over [kb, kb + kc), k-major:
// dst[kk * 16 + c]. Eight rows at a time are decoded eight elements wide and transposed in registers.
// Meanwhile the same lines of the next panel's rows are prefetched into L2: a panel reads its rows in
// pieces of one k-block, too short for the hardware prefetcher, and with few activation rows the packing
// is what waits on DRAM. (Into L2 only: those rows, a power-of-two stride apart, share one L1 set.)
template <class F>
void PackWeightPanel(const typename F::T* w, int64_t k, int64_t j0, int64_t cols, int64_t kb, int64_t kc,
                     float* dst) {
  for (int g = 0; g < kNr / 8; ++g) {
    const int64_t valid = std::clamp<int64_t>(cols - 8 * g, 0, 8);
    int64_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
      if ((kk * sizeof(typename F::T)) % 64 == 0) {
        for (int t = 0; t < 8; ++t) {
          _mm_prefetch(reinterpret_cast<const char*>(w + (j0 + kNr + 8 * g + t) * k + kb + kk), _MM_HINT_T1);
        }
      }
      __m256 r[8];
      for (int t = 0; t < 8; ++t) {
        r[t] = t < valid ? F::DecodeRow8(w + (j0 + 8 * g + t) * k + kb + kk) : _mm256_setzero_ps();
      }
      Transpose8x8(r);
      for (int t = 0; t < 8; ++t) _mm256_store_ps(dst + (kk + t) * kNr + 8 * g, r[t]);
    }
    for (; kk < kc; ++kk) {
      for (int t = 0; t < 8; ++t) {
        dst[kk * kNr + 8 * g + t] = t < valid ? F::DecodeWeight(w[(j0 + 8 * g + t) * k + kb + kk]) : 0.0f;
      }
    }
  }
}

// acc[r][h] += sum over kk of x[r][kk] * w[kk][8h .. 8h + 7]: two weight loads and kRows broadcasts feed
// 2 * kRows independent FMAs per k (12 accumulators at kRows = 6 cover the FMA latency of two ports).
// The accumulators are named locals: GCC keeps an array of them in memory and stores it back on every k,
// which halves the kernel's speed. Rows beyond kRows compile away.
#define QRAG_TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

template <int kRows>
void MicroKernelF32(const float* xp, const float* wp, int64_t kc, __m256 (&out)[kRows][2]) {
  static_assert(kRows >= 1 && kRows <= kMr);
#define QRAG_DECLARE(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
  QRAG_TILE_ROWS(QRAG_DECLARE)
#undef QRAG_DECLARE
  for (int64_t kk = 0; kk < kc; ++kk) {
    const __m256 b0 = _mm256_load_ps(wp + kk * kNr);
    const __m256 b1 = _mm256_load_ps(wp + kk * kNr + 8);
    const float* a = xp + kk * kRows;
#define QRAG_FMA(r)                               \
  if constexpr (r < kRows) {                      \
    const __m256 ar = _mm256_broadcast_ss(a + r); \
    c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);   \
    c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);   \
  }
    QRAG_TILE_ROWS(QRAG_FMA)
#undef QRAG_FMA
  }
#define QRAG_STORE(r)                         \
  if constexpr (r < kRows) {                  \
    out[r][0] = c##r##0, out[r][1] = c##r##1; \
  }
  QRAG_TILE_ROWS(QRAG_STORE)
#undef QRAG_STORE
}

// Adds a tile's partial sums of one k-block into y (the first block stores), applying the epilogue after
// the last. Edge columns go through a scalar copy of the same operations.
template <int kRows, class Epilogue>
void StoreTile(const __m256 (&acc)[kRows][2], float* y, int64_t n, int64_t i0, int64_t j0, int64_t cols,
               bool first, bool last, const Epilogue& epilogue) {
  for (int r = 0; r < kRows; ++r) {
    float* yr = y + (i0 + r) * n + j0;
    for (int h = 0; h < 2; ++h) {
      const int64_t valid = std::min<int64_t>(cols - 8 * h, 8);
      if (valid <= 0) break;
      if (valid == 8) {
        __m256 v = acc[r][h];
        if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(yr + 8 * h));
        if (last) v = epilogue.Vector(v, i0 + r, j0 + 8 * h);
        _mm256_storeu_ps(yr + 8 * h, v);
      } else {
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[r][h]);
        for (int64_t c = 0; c < valid; ++c) {
          float v = lanes[c];
          if (!first) v = v + yr[8 * h + c];
          if (last) v = epilogue.Scalar(v, i0 + r, j0 + 8 * h + c);
          yr[8 * h + c] = v;
        }
      }
    }
  }
}

template <class F, class Epilogue>
void BlockedGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k,
                 int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, const Epilogue& epilogue) {
  const int64_t kc_max = std::min(k, kKcFloat);
  float* xpack = ThreadScratch(kSlotX).Get<float>((m_end - m_begin) * kc_max);
  float* wpack = ThreadScratch(kSlotW).Get<float>(kNr * kc_max);
  for (int64_t kb = 0; kb < k; kb += kc_max) {
    const int64_t kc = std::min(kc_max, k - kb);
    const bool first = kb == 0, last = kb + kc == k;
    PackActivations<F>(x, k, m_begin, m_end, kb, kc, xpack);
    for (int64_t j0 = n_begin; j0 < n_end; j0 += kNr) {
      const int64_t cols = std::min<int64_t>(kNr, n_end - j0);
      PackWeightPanel<F>(w, k, j0, cols, kb, kc, wpack);
      for (int64_t i0 = m_begin; i0 < m_end; i0 += kMr) {
        DispatchRows<kMr>(std::min<int64_t>(kMr, m_end - i0), [&](auto rows) {
          constexpr int kRows = decltype(rows)::value;
          __m256 acc[kRows][2];
          MicroKernelF32<kRows>(xpack + (i0 - m_begin) * kc, wpack, kc, acc);
          StoreTile<kRows>(acc, y, n, i0, j0, cols, first, last, epilogue);
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Blocked GEMM, int8. Operands are int16 pairs (k, k + 1) in one int32 so that vpmaddwd of a broadcast
// activation pair with a weight vector gives eight exact x[k] w[k] + x[k+1] w[k+1] lanes.

int32_t Int16Pair(int8_t lo, int8_t hi) {
  return static_cast<int32_t>(static_cast<uint16_t>(static_cast<int16_t>(lo)) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(static_cast<int16_t>(hi))) << 16));
}

// Like PackActivations, in pairs: a panel holds dst[kp * h + r] for kp < ceil(kc / 2).
void PackActivationsInt8(const int8_t* x, int64_t k, int64_t m_begin, int64_t m_end, int64_t kb, int64_t kc,
                         int32_t* dst) {
  const int64_t pairs = (kc + 1) / 2;
  for (int64_t i0 = m_begin; i0 < m_end; i0 += kMrInt8) {
    const int64_t h = std::min<int64_t>(kMrInt8, m_end - i0);
    int32_t* panel = dst + (i0 - m_begin) * pairs;
    for (int64_t r = 0; r < h; ++r) {
      const int8_t* row = x + (i0 + r) * k + kb;
      for (int64_t kp = 0; kp < pairs; ++kp) {
        const int8_t hi = 2 * kp + 1 < kc ? row[2 * kp + 1] : int8_t{0};
        panel[kp * h + r] = Int16Pair(row[2 * kp], hi);
      }
    }
  }
}

// Like PackWeightPanel, in pairs: dst[kp * 16 + c]. Sixteen int8 of a row widen to eight int32 pairs, eight
// rows of which transpose as floats (the bits are only moved).
void PackWeightPanelInt8(const int8_t* w, int64_t k, int64_t j0, int64_t cols, int64_t kb, int64_t kc,
                         int32_t* dst) {
  const int64_t pairs = (kc + 1) / 2;
  const int64_t full_pairs = kc / 2;
  for (int g = 0; g < kNr / 8; ++g) {
    const int64_t valid = std::clamp<int64_t>(cols - 8 * g, 0, 8);
    int64_t kp = 0;
    for (; kp + 8 <= full_pairs; kp += 8) {
      __m256 r[8];
      for (int t = 0; t < 8; ++t) {
        if (t < valid) {
          const int8_t* src = w + (j0 + 8 * g + t) * k + kb + 2 * kp;
          r[t] = _mm256_castsi256_ps(
              _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
        } else {
          r[t] = _mm256_setzero_ps();
        }
      }
      Transpose8x8(r);
      for (int t = 0; t < 8; ++t) {
        _mm256_store_ps(reinterpret_cast<float*>(dst + (kp + t) * kNr + 8 * g), r[t]);
      }
    }
    for (; kp < pairs; ++kp) {
      for (int t = 0; t < 8; ++t) {
        int32_t pair = 0;
        if (t < valid) {
          const int8_t* src = w + (j0 + 8 * g + t) * k + kb + 2 * kp;
          pair = Int16Pair(src[0], 2 * kp + 1 < kc ? src[1] : int8_t{0});
        }
        dst[kp * kNr + 8 * g + t] = pair;
      }
    }
  }
}

template <int kRows>
void MicroKernelInt8(const int32_t* xp, const int32_t* wp, int64_t pairs, __m256i (&out)[kRows][2]) {
  static_assert(kRows >= 1 && kRows <= kMrInt8);
#define QRAG_DECLARE(r) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = _mm256_setzero_si256();
  QRAG_TILE_ROWS(QRAG_DECLARE)
#undef QRAG_DECLARE
  for (int64_t kp = 0; kp < pairs; ++kp) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + kp * kNr));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + kp * kNr + 8));
    const int32_t* a = xp + kp * kRows;
// (product, accumulator) operand order: the other way round GCC adds a register move per add, which cost
// a third of the kernel's speed.
#define QRAG_MADD(r)                                                \
  if constexpr (r < kRows) {                                        \
    const __m256i ar = _mm256_set1_epi32(a[r]);                     \
    c##r##0 = _mm256_add_epi32(_mm256_madd_epi16(ar, b0), c##r##0); \
    c##r##1 = _mm256_add_epi32(_mm256_madd_epi16(ar, b1), c##r##1); \
  }
    QRAG_TILE_ROWS(QRAG_MADD)
#undef QRAG_MADD
  }
#define QRAG_STORE(r)                         \
  if constexpr (r < kRows) {                  \
    out[r][0] = c##r##0, out[r][1] = c##r##1; \
  }
  QRAG_TILE_ROWS(QRAG_STORE)
#undef QRAG_STORE
}

// int32 partial sums live in `c` (row stride c_stride, columns relative to n_begin) between k-blocks;
// after the last block the exact sum is converted to fp32 (round to nearest even, as the reference's
// int64 -> float) and goes through the epilogue.
template <int kRows>
void StoreTileInt8(const __m256i (&acc)[kRows][2], int32_t* c, int64_t c_stride, float* y, int64_t n,
                   int64_t i0, int64_t j0, int64_t cols, bool first, bool last,
                   const ScaledEpilogue& epilogue) {
  for (int r = 0; r < kRows; ++r) {
    float* yr = y + (i0 + r) * n + j0;
    int32_t* cr = c + r * c_stride;
    for (int h = 0; h < 2; ++h) {
      const int64_t valid = std::min<int64_t>(cols - 8 * h, 8);
      if (valid <= 0) break;
      __m256i v = acc[r][h];
      if (!first) v = _mm256_add_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(cr + 8 * h)));
      if (!last) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(cr + 8 * h), v);
      } else if (valid == 8) {
        _mm256_storeu_ps(yr + 8 * h, epilogue.Vector(_mm256_cvtepi32_ps(v), i0 + r, j0 + 8 * h));
      } else {
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_cvtepi32_ps(v));
        for (int64_t col = 0; col < valid; ++col) {
          yr[8 * h + col] = epilogue.Scalar(lanes[col], i0 + r, j0 + 8 * h + col);
        }
      }
    }
  }
}

void BlockedGemmInt8(const int8_t* x, const int8_t* w, float* y, int64_t n, int64_t k, int64_t m_begin,
                     int64_t m_end, int64_t n_begin, int64_t n_end, const ScaledEpilogue& epilogue) {
  const int64_t kc_max = std::min(k, kKcInt8);
  const int64_t pairs_max = (kc_max + 1) / 2;
  int32_t* xpack = ThreadScratch(kSlotX).Get<int32_t>((m_end - m_begin) * pairs_max);
  int32_t* wpack = ThreadScratch(kSlotW).Get<int32_t>(kNr * pairs_max);
  // Partial sums across k-blocks: only needed when there is more than one.
  const int64_t c_stride = RoundUp(n_end - n_begin, kNr);
  int32_t* c = k > kc_max ? ThreadScratch(kSlotC).Get<int32_t>((m_end - m_begin) * c_stride) : nullptr;
  for (int64_t kb = 0; kb < k; kb += kc_max) {
    const int64_t kc = std::min(kc_max, k - kb);
    const int64_t pairs = (kc + 1) / 2;
    const bool first = kb == 0, last = kb + kc == k;
    PackActivationsInt8(x, k, m_begin, m_end, kb, kc, xpack);
    for (int64_t j0 = n_begin; j0 < n_end; j0 += kNr) {
      const int64_t cols = std::min<int64_t>(kNr, n_end - j0);
      PackWeightPanelInt8(w, k, j0, cols, kb, kc, wpack);
      for (int64_t i0 = m_begin; i0 < m_end; i0 += kMrInt8) {
        DispatchRows<kMrInt8>(std::min<int64_t>(kMrInt8, m_end - i0), [&](auto rows) {
          constexpr int kRows = decltype(rows)::value;
          __m256i acc[kRows][2];
          MicroKernelInt8<kRows>(xpack + (i0 - m_begin) * pairs, wpack, pairs, acc);
          int32_t* ct = c != nullptr ? c + (i0 - m_begin) * c_stride + (j0 - n_begin) : nullptr;
          StoreTileInt8<kRows>(acc, ct, c_stride, y, n, i0, j0, cols, first, last, epilogue);
        });
      }
    }
  }
}

#undef QRAG_TILE_ROWS

// ---------------------------------------------------------------------------------------------------

template <class F, class Epilogue>
void FloatGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k,
               int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, const Epilogue& epilogue) {
  if (m_end - m_begin <= F::kDotMaxRows) {
    DotGemm<F>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  } else {
    BlockedGemm<F>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  }
}

}  // namespace

void Avx2GemmF32(const float* x, const float* w, const float* bias, float* y, int64_t n, int64_t k,
                 int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  FloatGemm<F32Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, UnscaledEpilogue{bias});
}

void Avx2GemmBf16(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t n, int64_t k,
                  int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
  FloatGemm<Bf16Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, UnscaledEpilogue{bias});
}

void Avx2GemmFp8(const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale,
                 const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                 int64_t n_begin, int64_t n_end) {
  FloatGemm<Fp8Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, ScaledEpilogue{x_scale, w_scale, bias});
  if (m_end - m_begin > Fp8Format::kDotMaxRows) return;  // the packed path decodes activations with NaNs
  // The dot kernels decode activations with the half trick, which reads the NaN code as 480; a NaN
  // activation makes its whole output row NaN in the reference, so do that here.
  for (int64_t i = m_begin; i < m_end; ++i) {
    bool has_nan = false;
    for (int64_t p = 0; p < k; ++p) has_nan |= (x[i * k + p] & 0x7f) == 0x7f;
    if (!has_nan) continue;
    for (int64_t j = n_begin; j < n_end; ++j) y[i * n + j] = std::numeric_limits<float>::quiet_NaN();
  }
}

void Avx2GemmInt8(const int8_t* x, const float* x_scale, const int8_t* w, const float* w_scale,
                  const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                  int64_t n_begin, int64_t n_end) {
  const ScaledEpilogue epilogue{x_scale, w_scale, bias};
  if (m_end - m_begin <= kDotMaxRowsInt8) {
    DotGemmInt8(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  } else {
    BlockedGemmInt8(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  }
}

}  // namespace qrag::backend::cpu::internal

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
