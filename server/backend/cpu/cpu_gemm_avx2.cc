// AVX2/FMA/F16C GEMM kernels of the fast CPU path (cpu_gemm.h). The instruction sets are enabled for this
// file's own functions (see the pragma below); cpu_gemm.cc calls them only after CpuHasAvx2().
//
// Float schemes (fp32, bf16, fp8) follow the canonical accumulation order of cpu_gemm.h in every kernel:
// each output element owns eight fp32 lanes, lane l takes the products of the k-indices p = l (mod 8) in
// increasing p with one FMA each (k zero-padded to a multiple of 8), and the lanes are reduced by one fixed
// tree. Two shapes of work produce exactly that chain for each element:
//  - few activation rows (decode, small batches): "dot" kernels. The activation rows are decoded once into
//    fp32; the weights are decoded in registers, eight consecutive k per vector, in order, so that a vector
//    lane is a canonical lane. A register tile of R activation rows x C weight rows holds one accumulator
//    per output; the C weight rows supply the independent FMA chains that one output cannot (its own chain
//    is one FMA per eight products).
//  - many rows (prefill): a GotoBLAS/BLIS-style blocked GEMM whose vector lanes are output columns (a
//    kMr x 16 register tile, broadcast activations times a 16-column weight panel). The canonical lanes
//    become eight "residue" passes: panels are packed residue-major (for residue l, the k-indices
//    kb + l, kb + l + 8, ... are adjacent), the tile runs one pass per residue, and the eight partial tiles
//    of every output live in a scratch state between k-blocks; after the last k-block they are reduced by
//    the canonical tree. The weight panel stays in L1 while the activation panels stream past it.
// fp8 weights are decoded with the half trick (value * 2^-8) and the sum is multiplied back by 2^8: the
// canonical sum of an fp8 dot product never holds a subnormal (every product and partial sum is zero or
// at least 2^-18 in magnitude), so the power-of-two scale commutes with every rounding and the result is
// bit-identical to the unscaled order.
//
// Int8 (vpmaddwd on int16 pairs) is exact in int32, so its order is free: the dot kernels and the blocked
// GEMM keep their own.
//
// Exactness: fp8 and bf16 products are exact in fp32, int8 sums are exact in int32 (cpu_gemm.cc keeps
// k < 2^17), and the epilogue performs the same fp32 operations in the same order as the reference (an
// explicit fma, never a contraction chosen by the compiler), so integer-valued inputs give bit-identical
// outputs and int8 always does. GCC contracts a * b + c into an FMA in C++ even with -std=c++20 (the
// -ffp-contract=off default of ISO modes is for C only) and FMA is enabled here: no scalar or vector
// expression of this file may multiply and then add, or the compiler could change a rounding.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "server/quant/w4.h"

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
// below). Measured with bench/cpu_gemm_bench.cc at n = k = 2048.
constexpr int64_t kDotMaxRowsInt8 = 16;
// Blocked GEMM: register tile kMr x kNr, k-block of kKc elements. The int8 weight panel of 16 x 512 int16
// pairs is 16 KiB, half of L1. The float one of 16 x 192 fp32 is 12 KiB, so that it and a tile's activation
// panel (up to 12 x 192 fp32, 9 KiB) share L1: on the 2.0 GHz Xeon (1 MiB L2) of 2026-12-01, 192 beat 128,
// 256 and 384 (the earlier choice, made on a faster host) by 1.2-1.5x at m = 128-256 in
// bench/cpu_gemm_bench.cc. kKcFloat is a multiple of 8, so that every k-block holds whole canonical lane
// groups.
constexpr int kMr = 6;
// With AVX-512F the float blocked GEMM's register tile is kMrWide x 16: one zmm accumulator per row (the
// same 16-column panels, packings and residue state, so every output takes the same canonical chain).
constexpr int kMrWide = 12;
constexpr int kMrInt8 = 4;  // int8 needs a temporary per vpmaddwd: 6 rows spill the 16 ymm registers
constexpr int kNr = 16;
constexpr int64_t kKcFloat = 192;
constexpr int64_t kKcInt8 = 512;
// Float blocked GEMM: activation rows per chunk, and weight panels per group. A chunk's activations are
// packed over the whole k; a group's panels run through each k-block together, so that the chunk's k-block
// of activations is read from L2 once per group rather than once per panel. The group's residue state
// (rows x 64 columns x 8 lanes of fp32, 288 KiB) stays in L2. Each weight panel is packed once per chunk:
// smaller chunks repack it too often (48 rows: 15-20% slower at m = 128).
constexpr int64_t kMcFloat = 144;
constexpr int64_t kPanelsPerGroup = 4;
static_assert(kKcFloat % 8 == 0 && kMcFloat % kMr == 0 && kMcFloat % kMrWide == 0);

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// ---------------------------------------------------------------------------------------------------
// Per-thread scratch: 64-byte aligned, grown on demand and kept. The pool's threads live as long as the
// backend, so packing buffers are allocated once rather than per call.

class Scratch {
 public:
  // Room for `count` T's, or null when the memory cannot be had (the kernels then report failure, and the
  // GEMM returns RESOURCE_EXHAUSTED instead of taking the process down).
  template <typename T>
  T* Get(int64_t count) {
    const size_t bytes = static_cast<size_t>(RoundUp(std::max<int64_t>(count, 1) * sizeof(T), 64));
    if (bytes > capacity_) {
      data_.reset(static_cast<char*>(std::aligned_alloc(64, bytes)));
      capacity_ = data_ == nullptr ? 0 : bytes;
      if (data_ == nullptr) return nullptr;
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

// Calls fn(std::integral_constant<int, rows>) for rows in [1, kMaxRows], so tile sizes are compile-time.
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

// The canonical reduction of an output's eight lanes (cpu_gemm.h):
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
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

// The same tree applied lane-wise to eight vectors whose vector r holds lane r of eight outputs (the
// blocked GEMM's residue state).
__m256 CanonicalReduce(const __m256 (&a)[8]) {
  const __m256 even = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
  const __m256 odd = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
  return _mm256_add_ps(even, odd);
}

// ---------------------------------------------------------------------------------------------------
// Number formats. E4M3 decoding uses the IEEE half trick: a code's bits placed as s.0eeee.mmm0000000
// (sign to bit 15, exponent and mantissa shifted left by 7) form a binary16 whose value is the E4M3 value
// times 2^-8, for every finite code including subnormals, since both formats are sign-magnitude with the
// same mantissa alignment and the exponent biases differ by 8 (OCP OFP8 v1.0: bias 7; IEEE 754 binary16:
// bias 15). F16C converts eight of them per instruction. The NaN code S.1111.111 becomes 1.875 * 2^0, i.e.
// 480 after rescaling (cpu_gemm.h: the fast kernels read a NaN weight as +-480; NaN activations are
// handled by cpu_gemm.cc).

// Half-trick bits of each E4M3 code in a vector of sign-extended 16-bit lanes.
__m128i E4M3LanesToHalf(__m128i sign_extended) {
  return _mm_and_si128(_mm_slli_epi16(sign_extended, 7), _mm_set1_epi16(static_cast<short>(0xbf80)));
}
__m256i E4M3LanesToHalf(__m256i sign_extended) {
  return _mm256_and_si256(_mm256_slli_epi16(sign_extended, 7), _mm256_set1_epi16(static_cast<short>(0xbf80)));
}

float E4M3HalfTrickScalar(uint8_t code) {  // value * 2^-8, bit-identical to the vector decode
  const uint16_t sign_extended = static_cast<uint16_t>(static_cast<int16_t>(static_cast<int8_t>(code)));
  return _cvtsh_ss(static_cast<uint16_t>((sign_extended << 7) & 0xbf80u));
}

// A float format, seen by the kernels through:
//  - kDotMaxRows: the most activation rows for which the dot kernels beat the blocked GEMM.
//  - Weights in the kernels' representation, in k order: Decode8 (eight elements, one vector), Decode16
//    (sixteen, two vectors), DecodeWeight (one). The representation is the value times 1 / kSumScale.
//  - kSumScale: the power of two by which a sum of activation x weight products is multiplied (exactly)
//    to give the canonical sum.
//  - Activations as true values: DecodeActivation16 / DecodeActivation (fp8 NaN codes may come out as
//    +-480; cpu_gemm.cc overwrites the rows they touch).
struct F32Format {
  using T = float;
  static constexpr int64_t kDotMaxRows = 32;
  static constexpr float kSumScale = 1.0f;
  static __m256 Decode8(const float* p) { return _mm256_loadu_ps(p); }
  static void Decode16(const float* p, __m256& lo, __m256& hi) {
    lo = _mm256_loadu_ps(p);
    hi = _mm256_loadu_ps(p + 8);
  }
  static float DecodeWeight(float v) { return v; }
  static void DecodeActivation16(const float* p, __m256& lo, __m256& hi) { Decode16(p, lo, hi); }
  static float DecodeActivation(float v) { return v; }
};

struct Bf16Format {
  using T = uint16_t;
  static constexpr int64_t kDotMaxRows = 32;
  static constexpr float kSumScale = 1.0f;
  // bf16 is the upper half of an fp32: widen to 32 bits and shift up.
  static __m256 Decode8(const uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  static void Decode16(const uint16_t* p, __m256& lo, __m256& hi) {
    lo = Decode8(p);
    hi = Decode8(p + 8);
  }
  static float DecodeWeight(uint16_t v) {
    const uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static void DecodeActivation16(const uint16_t* p, __m256& lo, __m256& hi) { Decode16(p, lo, hi); }
  static float DecodeActivation(uint16_t v) { return DecodeWeight(v); }
};

struct Fp8Format {
  using T = uint8_t;
  static constexpr int64_t kDotMaxRows = 16;
  static constexpr float kSumScale = 256.0f;  // weights decoded as value * 2^-8
  // Sixteen codes sign-extended to 16-bit lanes, in order; the half-trick bits of all sixteen in two ops.
  static void Decode16(const uint8_t* p, __m256& lo, __m256& hi) {
    const __m256i half =
        E4M3LanesToHalf(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    lo = _mm256_cvtph_ps(_mm256_castsi256_si128(half));
    hi = _mm256_cvtph_ps(_mm256_extracti128_si256(half, 1));
  }
  static __m256 Decode8(const uint8_t* p) {
    const __m128i codes = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtph_ps(E4M3LanesToHalf(codes));
  }
  static float DecodeWeight(uint8_t v) { return E4M3HalfTrickScalar(v); }
  static void DecodeActivation16(const uint8_t* p, __m256& lo, __m256& hi) {
    Decode16(p, lo, hi);
    lo = _mm256_mul_ps(lo, _mm256_set1_ps(256.0f));
    hi = _mm256_mul_ps(hi, _mm256_set1_ps(256.0f));
  }
  static float DecodeActivation(uint8_t v) { return E4M3HalfTrickScalar(v) * 256.0f; }
};

// Eight weights at p, of which only `count` (< 8) exist; the rest read as zero (the canonical padding).
template <class F>
__m256 DecodePartial8(const typename F::T* p, int64_t count) {
  typename F::T tail[8] = {};
  std::memcpy(tail, p, count * sizeof(typename F::T));
  return F::Decode8(tail);
}

// Applies kSumScale to an accumulated sum (a no-op for the formats decoded at their true value).
template <class F>
float ScaleSum(float sum) {
  if constexpr (F::kSumScale == 1.0f) {
    return sum;
  } else {
    return sum * F::kSumScale;
  }
}
template <class F>
__m256 ScaleSum(__m256 sum) {
  if constexpr (F::kSumScale == 1.0f) {
    return sum;
  } else {
    return _mm256_mul_ps(sum, _mm256_set1_ps(F::kSumScale));
  }
}

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
// The weight streams are also prefetched in software, this far ahead, once per 64-byte line, into L2 (into
// L1 the lines evicted the activation rows): the hardware prefetcher alone left DRAM idle once the kernel's
// compute rate came close to the memory rate (fp8 and bf16 decode at a third of their cached speed).
constexpr int64_t kDotPrefetchBytes = 4096;

template <typename T>
void PrefetchAhead(const T* p, int64_t extra_bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kDotPrefetchBytes + extra_bytes, _MM_HINT_T1);
}

// Weight rows per block of the dot kernels: with more than one group of activation rows, each group
// streams the block again, so it is sized to come back from L2 (half of it) rather than from DRAM.
constexpr int64_t kDotWeightBlockBytes = 512 << 10;
int64_t DotWeightBlock(int64_t k, int64_t element_bytes) {
  return std::max<int64_t>(1, kDotWeightBlockBytes / std::max<int64_t>(1, k * element_bytes));
}

// Activation rows per group of the float dot kernels, and weight rows per register tile for a group of R
// rows: R x C accumulators, C independent weight streams (each output's own chain is one FMA per eight
// products, so one-row decode needs eight weight rows in flight to cover the FMA latency).
constexpr int kDotGroupRows = 4;
template <int R>
constexpr int kDotTileCols = R == 1   ? 8
                             : R == 2 ? 4
                                      : 3;

// Decodes activation rows [m_begin, m_end) to fp32 rows of kp floats (kp = k rounded up to 8, zero
// padded: the canonical padding).
template <class F>
void DecodeDotRows(const typename F::T* x, int64_t k, int64_t m_begin, int64_t m_end, int64_t kp,
                   float* out) {
  for (int64_t i = m_begin; i < m_end; ++i) {
    const typename F::T* row = x + i * k;
    float* dst = out + (i - m_begin) * kp;
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
      __m256 lo, hi;
      F::DecodeActivation16(row + p, lo, hi);
      _mm256_storeu_ps(dst + p, lo);
      _mm256_storeu_ps(dst + p + 8, hi);
    }
    for (; p < k; ++p) dst[p] = F::DecodeActivation(row[p]);
    for (; p < kp; ++p) dst[p] = 0.0f;
  }
}

// out[r][c] = canonical sum of activation row r (xd + r * kp, decoded) times weight row c (w + c * stride *
// k), the weights decoded in registers. Each accumulator takes the vectors of its products in increasing k:
// lane l of the vector at k-offset s holds product s + l, so the lanes are the canonical ones.
template <class F, int R, int C>
void DotTile(const float* xd, int64_t kp, const typename F::T* w, int64_t stride, int64_t k,
             float (&out)[R][C]) {
  using T = typename F::T;
  __m256 acc[R][C];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm256_setzero_ps();
  }
  const int64_t k8 = k & ~int64_t{7};
  const int64_t row_step = stride * k;
  constexpr int64_t kLineElements = 64 / sizeof(T);
  int64_t s = 0;
  for (; s + 16 <= k8; s += 16) {
    if (s % kLineElements == 0) {
      for (int c = 0; c < C; ++c) PrefetchAhead(w + c * row_step + s, 0);
    }
    for (int c = 0; c < C; ++c) {
      __m256 lo, hi;
      F::Decode16(w + c * row_step + s, lo, hi);
      for (int r = 0; r < R; ++r)
        acc[r][c] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xd + r * kp + s), acc[r][c]);
      for (int r = 0; r < R; ++r) {
        acc[r][c] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xd + r * kp + s + 8), acc[r][c]);
      }
    }
  }
  if (s < k8) {
    for (int c = 0; c < C; ++c) {
      const __m256 v = F::Decode8(w + c * row_step + s);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xd + r * kp + s), acc[r][c]);
    }
  }
  if (k8 < k) {
    for (int c = 0; c < C; ++c) {
      const __m256 v = DecodePartial8<F>(w + c * row_step + k8, k - k8);
      for (int r = 0; r < R; ++r) {
        acc[r][c] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xd + r * kp + k8), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) out[r][c] = HorizontalSum(acc[r][c]);
  }
}

// The tile of activation rows [i0, i0 + R) and weight rows j, j + stride, ..., j + (C - 1) stride.
template <class F, int R, int C, class Epilogue>
void DotTileStore(const float* xd, int64_t kp, const typename F::T* w, int64_t k, float* y, int64_t n,
                  int64_t i0, int64_t j, int64_t stride, const Epilogue& epilogue) {
  float out[R][C];
  DotTile<F, R, C>(xd, kp, w + j * k, stride, k, out);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      y[(i0 + r) * n + j + c * stride] = epilogue.Scalar(ScaleSum<F>(out[r][c]), i0 + r, j + c * stride);
    }
  }
}

// A block of weight rows is cut into C contiguous streams of `per_stream` rows, and tile t takes row t of
// every stream: each of the C weight streams the tile reads at once runs through memory front to back for
// the whole block, which the hardware prefetchers follow at DRAM bandwidth. (C rows side by side instead
// are C streams one row long, 2 KiB for fp8 at k = 2048, and left DRAM idle at every row start.) The rows
// that do not fill C streams take a narrower tile.
template <class F, class Epilogue>
bool DotGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k, int64_t m_begin,
             int64_t m_end, int64_t n_begin, int64_t n_end, const Epilogue& epilogue) {
  const int64_t kp = RoundUp(k, 8);
  float* xd = ThreadScratch(kSlotX).Get<float>((m_end - m_begin) * kp);
  if (xd == nullptr) return false;
  DecodeDotRows<F>(x, k, m_begin, m_end, kp, xd);
  // One group of activation rows reads the weights once: its streams run over the whole range.
  const int64_t block =
      m_end - m_begin <= kDotGroupRows ? n_end - n_begin : DotWeightBlock(k, sizeof(typename F::T));
  for (int64_t j0 = n_begin; j0 < n_end; j0 += block) {
    const int64_t j1 = std::min(n_end, j0 + block);
    for (int64_t i0 = m_begin; i0 < m_end; i0 += kDotGroupRows) {
      DispatchRows<kDotGroupRows>(std::min<int64_t>(kDotGroupRows, m_end - i0), [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        constexpr int C = kDotTileCols<R>;
        const float* xi = xd + (i0 - m_begin) * kp;
        const int64_t per_stream = (j1 - j0) / C;
        for (int64_t t = 0; t < per_stream; ++t) {
          DotTileStore<F, R, C>(xi, kp, w, k, y, n, i0, j0 + t, per_stream, epilogue);
        }
        const int64_t j = j0 + C * per_stream;
        if (j < j1) {
          DispatchRows<C>(j1 - j, [&](auto cols) {
            DotTileStore<F, R, decltype(cols)::value>(xi, kp, w, k, y, n, i0, j, 1, epilogue);
          });
        }
      });
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Int8 dot kernels.

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

bool DotGemmInt8(const int8_t* x, const int8_t* w, float* y, int64_t n, int64_t k, int64_t m_begin,
                 int64_t m_end, int64_t n_begin, int64_t n_end, const ScaledEpilogue& epilogue) {
  const int64_t kp = RoundUp(k, 32);
  int16_t* xd = ThreadScratch(kSlotX).Get<int16_t>((m_end - m_begin) * kp);
  if (xd == nullptr) return false;
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
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Blocked GEMM, float formats, in canonical lanes ("residues").
//
// A k-block of kc elements (kc a multiple of 8) holds S = kc / 8 values of each residue l in 0..7: the
// k-indices kb + 8 s + l, s < S. Panels store the block residue-major, residue l's S values together, so a
// residue pass of the register tile reads contiguous memory and runs one canonical lane's FMA chain for
// every element of the tile.

// The activation panels of rows [i_chunk, i_chunk + rows) over the whole k (kp = k rounded up to 8, zero
// padded). For each k-block (offset kb, size kc) and tile of h = min(kMr, rows left) rows starting at i0,
// the panel at dst + kb * rows + (i0 - i_chunk) * kc holds element (row r, k-index kb + 8 s + l) at
// [(l * S + s) * h + r].
template <class F, int Mr>
void PackActivationsResidue(const typename F::T* x, int64_t k, int64_t kp, int64_t i_chunk, int64_t rows,
                            float* dst) {
  for (int64_t kb = 0; kb < kp; kb += kKcFloat) {
    const int64_t kc = std::min(kKcFloat, kp - kb);
    const int64_t steps = kc / 8;
    float* block = dst + kb * rows;
    for (int64_t i0 = i_chunk; i0 < i_chunk + rows; i0 += Mr) {
      const int64_t h = std::min<int64_t>(Mr, i_chunk + rows - i0);
      float* panel = block + (i0 - i_chunk) * kc;
      for (int64_t r = 0; r < h; ++r) {
        const typename F::T* row = x + (i0 + r) * k;
        for (int64_t kk = 0; kk < kc; ++kk) {
          const int64_t p = kb + kk;
          panel[((kk & 7) * steps + (kk >> 3)) * h + r] = p < k ? F::DecodeActivation(row[p]) : 0.0f;
        }
      }
    }
  }
}

// The weight panel of columns [j0, j0 + cols) (cols <= 16, the rest zero) over [kb, kb + kc), residue-major:
// dst[(l * S + s) * 16 + c] holds w[j0 + c, kb + 8 s + l] (zero beyond k). Eight rows at a time are decoded
// eight consecutive k wide and transposed in registers, which turns the eight k-indices of a lane group
// into the eight residues. Meanwhile the same lines of the next panel's rows are prefetched into L2: a
// panel reads its rows in pieces of one k-block, too short for the hardware prefetcher, and with few
// activation rows the packing is what waits on DRAM. (Into L2 only: those rows, a power-of-two stride
// apart, share one L1 set.)
template <class F>
void PackWeightPanelResidue(const typename F::T* w, int64_t k, int64_t j0, int64_t cols, int64_t kb,
                            int64_t kc, float* dst) {
  const int64_t steps = kc / 8;
  for (int g = 0; g < kNr / 8; ++g) {
    const int64_t valid = std::clamp<int64_t>(cols - 8 * g, 0, 8);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t p = kb + 8 * s;
      if ((8 * s * sizeof(typename F::T)) % 64 == 0) {
        for (int t = 0; t < 8; ++t) {
          _mm_prefetch(reinterpret_cast<const char*>(w + (j0 + kNr + 8 * g + t) * k + p), _MM_HINT_T1);
        }
      }
      __m256 r[8];
      for (int t = 0; t < 8; ++t) {
        const typename F::T* src = w + (j0 + 8 * g + t) * k + p;
        if (t >= valid) {
          r[t] = _mm256_setzero_ps();
        } else if (p + 8 <= k) {
          r[t] = F::Decode8(src);
        } else {
          r[t] = DecodePartial8<F>(src, k - p);
        }
      }
      Transpose8x8(r);
      for (int l = 0; l < 8; ++l) _mm256_store_ps(dst + (l * steps + s) * kNr + 8 * g, r[l]);
    }
  }
}

// One residue pass of a kRows x 16 tile: acc[r][h] += x[r][s] * w[s][8h .. 8h + 7] for s < steps, two
// weight loads and kRows broadcasts feeding 2 * kRows independent FMAs per step (12 accumulators at
// kRows = 6 cover the FMA latency of two ports). The accumulators start from `state` (kRows x 16 floats,
// 64-byte aligned), or from +0 on the first k-block, and go back to it. They are named locals: GCC keeps an
// array of them in memory and stores it back on every step, which halves the kernel's speed. Rows beyond
// kRows compile away.
#define QRAG_TILE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

template <int kRows>
void MicroKernelResidue(const float* xp, const float* wp, int64_t steps, float* state, bool first) {
  static_assert(kRows >= 1 && kRows <= kMr);
#define QRAG_DECLARE(r)                                                \
  __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps(); \
  if constexpr (r < kRows) {                                           \
    if (!first) {                                                      \
      c##r##0 = _mm256_load_ps(state + r * kNr);                       \
      c##r##1 = _mm256_load_ps(state + r * kNr + 8);                   \
    }                                                                  \
  }
  QRAG_TILE_ROWS(QRAG_DECLARE)
#undef QRAG_DECLARE
  for (int64_t s = 0; s < steps; ++s) {
    const __m256 b0 = _mm256_load_ps(wp + s * kNr);
    const __m256 b1 = _mm256_load_ps(wp + s * kNr + 8);
    const float* a = xp + s * kRows;
#define QRAG_FMA(r)                               \
  if constexpr (r < kRows) {                      \
    const __m256 ar = _mm256_broadcast_ss(a + r); \
    c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);   \
    c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);   \
  }
    QRAG_TILE_ROWS(QRAG_FMA)
#undef QRAG_FMA
  }
#define QRAG_STORE(r)                              \
  if constexpr (r < kRows) {                       \
    _mm256_store_ps(state + r * kNr, c##r##0);     \
    _mm256_store_ps(state + r * kNr + 8, c##r##1); \
  }
  QRAG_TILE_ROWS(QRAG_STORE)
#undef QRAG_STORE
}

// The AVX-512F residue pass of a kRows x 16 tile: one weight load, kRows broadcasts and kRows independent
// FMAs per step (12 zmm accumulators cover the latency of two FMA ports). Lane c of row r's accumulator is
// the same canonical lane chain as in MicroKernelResidue: only the vector width differs.
#define QRAG_WIDE_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

template <int kRows>
__attribute__((target("avx512f,avx2,fma,f16c"))) void MicroKernelResidueWide(const float* xp, const float* wp,
                                                                            int64_t steps, float* state,
                                                                            bool first) {
  static_assert(kRows >= 1 && kRows <= kMrWide);
#define QRAG_DECLARE(r)                                         \
  __m512 c##r = _mm512_setzero_ps();                            \
  if constexpr (r < kRows) {                                    \
    if (!first) c##r = _mm512_load_ps(state + r * kNr);         \
  }
  QRAG_WIDE_ROWS(QRAG_DECLARE)
#undef QRAG_DECLARE
  for (int64_t s = 0; s < steps; ++s) {
    const __m512 b = _mm512_load_ps(wp + s * kNr);
    const float* a = xp + s * kRows;
#define QRAG_FMA(r)                                                   \
  if constexpr (r < kRows) {                                          \
    c##r = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), b, c##r);            \
  }
    QRAG_WIDE_ROWS(QRAG_FMA)
#undef QRAG_FMA
  }
#define QRAG_STORE(r) \
  if constexpr (r < kRows) _mm512_store_ps(state + r * kNr, c##r);
  QRAG_WIDE_ROWS(QRAG_STORE)
#undef QRAG_STORE
}

#undef QRAG_WIDE_ROWS

// Reduces the eight residue tiles of an h-row tile (state[(l * h + r) * 16 + c]) by the canonical tree and
// writes the outputs through the epilogue. Edge columns go through a scalar copy of the same operations.
template <class F, class Epilogue>
void StoreResidueTile(const float* state, int64_t h, float* y, int64_t n, int64_t i0, int64_t j0,
                      int64_t cols, const Epilogue& epilogue) {
  for (int64_t r = 0; r < h; ++r) {
    float* yr = y + (i0 + r) * n + j0;
    for (int g = 0; g < kNr / 8; ++g) {
      const int64_t valid = std::min<int64_t>(cols - 8 * g, 8);
      if (valid <= 0) break;
      __m256 lanes[8];
      for (int l = 0; l < 8; ++l) lanes[l] = _mm256_load_ps(state + (l * h + r) * kNr + 8 * g);
      const __m256 sum = ScaleSum<F>(CanonicalReduce(lanes));
      if (valid == 8) {
        _mm256_storeu_ps(yr + 8 * g, epilogue.Vector(sum, i0 + r, j0 + 8 * g));
      } else {
        float s[8];
        _mm256_storeu_ps(s, sum);
        for (int64_t c = 0; c < valid; ++c) yr[8 * g + c] = epilogue.Scalar(s[c], i0 + r, j0 + 8 * g + c);
      }
    }
  }
}

template <class F, int Mr, class Epilogue>
bool BlockedGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k,
                 int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, const Epilogue& epilogue) {
  static_assert(Mr == kMr || Mr == kMrWide);
  const int64_t kp = RoundUp(k, 8);
  const int64_t chunk_max = std::min(kMcFloat, m_end - m_begin);
  float* xpack = ThreadScratch(kSlotX).Get<float>(chunk_max * kp);
  float* wpack = ThreadScratch(kSlotW).Get<float>(kNr * std::min(kp, kKcFloat));
  const int64_t panel_state = chunk_max * kNr * 8;
  float* state = ThreadScratch(kSlotC).Get<float>(kPanelsPerGroup * panel_state);
  if (xpack == nullptr || wpack == nullptr || state == nullptr) return false;
  for (int64_t i_chunk = m_begin; i_chunk < m_end; i_chunk += kMcFloat) {
    const int64_t rows = std::min(kMcFloat, m_end - i_chunk);
    PackActivationsResidue<F, Mr>(x, k, kp, i_chunk, rows, xpack);
    for (int64_t j_group = n_begin; j_group < n_end; j_group += kNr * kPanelsPerGroup) {
      const int64_t group_end = std::min(n_end, j_group + kNr * kPanelsPerGroup);
      for (int64_t kb = 0; kb < kp; kb += kKcFloat) {
        const int64_t kc = std::min(kKcFloat, kp - kb);
        const int64_t steps = kc / 8;
        for (int64_t j0 = j_group; j0 < group_end; j0 += kNr) {
          const int64_t cols = std::min<int64_t>(kNr, group_end - j0);
          PackWeightPanelResidue<F>(w, k, j0, cols, kb, kc, wpack);
          float* panel_st = state + (j0 - j_group) / kNr * panel_state;
          for (int64_t i0 = i_chunk; i0 < i_chunk + rows; i0 += Mr) {
            DispatchRows<Mr>(std::min<int64_t>(Mr, i_chunk + rows - i0), [&](auto tile_rows) {
              constexpr int h = decltype(tile_rows)::value;
              const float* xp = xpack + kb * rows + (i0 - i_chunk) * kc;
              float* st = panel_st + (i0 - i_chunk) * kNr * 8;
              for (int l = 0; l < 8; ++l) {
                if constexpr (Mr == kMrWide) {
                  MicroKernelResidueWide<h>(xp + l * steps * h, wpack + l * steps * kNr, steps,
                                            st + l * h * kNr, kb == 0);
                } else {
                  MicroKernelResidue<h>(xp + l * steps * h, wpack + l * steps * kNr, steps, st + l * h * kNr,
                                        kb == 0);
                }
              }
            });
          }
        }
      }
      for (int64_t j0 = j_group; j0 < group_end; j0 += kNr) {
        const int64_t cols = std::min<int64_t>(kNr, group_end - j0);
        const float* panel_st = state + (j0 - j_group) / kNr * panel_state;
        for (int64_t i0 = i_chunk; i0 < i_chunk + rows; i0 += Mr) {
          const int64_t h = std::min<int64_t>(Mr, i_chunk + rows - i0);
          StoreResidueTile<F>(panel_st + (i0 - i_chunk) * kNr * 8, h, y, n, i0, j0, cols, epilogue);
        }
      }
    }
  }
  return true;
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
    // c is null when the whole k range is one block (first and last): nothing is carried between blocks.
    int32_t* cr = c != nullptr ? c + r * c_stride : nullptr;
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

bool BlockedGemmInt8(const int8_t* x, const int8_t* w, float* y, int64_t n, int64_t k, int64_t m_begin,
                     int64_t m_end, int64_t n_begin, int64_t n_end, const ScaledEpilogue& epilogue) {
  const int64_t kc_max = std::min(k, kKcInt8);
  const int64_t pairs_max = (kc_max + 1) / 2;
  int32_t* xpack = ThreadScratch(kSlotX).Get<int32_t>((m_end - m_begin) * pairs_max);
  int32_t* wpack = ThreadScratch(kSlotW).Get<int32_t>(kNr * pairs_max);
  // Partial sums across k-blocks: only needed when there is more than one.
  const int64_t c_stride = RoundUp(n_end - n_begin, kNr);
  int32_t* c = k > kc_max ? ThreadScratch(kSlotC).Get<int32_t>((m_end - m_begin) * c_stride) : nullptr;
  if (xpack == nullptr || wpack == nullptr || (k > kc_max && c == nullptr)) return false;
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
  return true;
}

#undef QRAG_TILE_ROWS

// ---------------------------------------------------------------------------------------------------

template <class F, class Epilogue>
bool FloatGemm(const typename F::T* x, const typename F::T* w, float* y, int64_t n, int64_t k,
               int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, bool avx512,
               const Epilogue& epilogue) {
  if (m_end - m_begin <= F::kDotMaxRows || k == 0) {  // k = 0: the dot kernels write the empty sums
    return DotGemm<F>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  } else if (avx512) {
    return BlockedGemm<F, kMrWide>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  }
  return BlockedGemm<F, kMr>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
}

// ---------------------------------------------------------------------------------------------------
// w4 (quant/w4.h), sixteen weights per step: eight code bytes split into their nibbles and interleaved back
// into element order (low nibble = even element), widened to int32 and converted to fp32 (exact), then one
// multiply by the vector's scale (symmetric: nibble sign-extended) or one FMA with its scale and minimum
// (asymmetric: nibble unsigned). quant::DequantizeW4Rows does the same single rounding, so the values are
// bit-identical, and the w4 dot kernel below, which takes them in the canonical order, gives exactly what the
// fp32 kernels give on the dequantized weight.

template <bool kAsymmetric>
void W4Decode16(const uint8_t* bytes, __m256 scale, __m256 min, __m256& lo, __m256& hi) {
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  const __m128i mask = _mm_set1_epi8(0x0f);
  __m128i n = _mm_unpacklo_epi8(_mm_and_si128(raw, mask), _mm_and_si128(_mm_srli_epi16(raw, 4), mask));
  if constexpr (kAsymmetric) {
    lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n)), scale, min);
    hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(n, 8))), scale, min);
  } else {
    n = _mm_sub_epi8(_mm_xor_si128(n, _mm_set1_epi8(8)), _mm_set1_epi8(8));  // sign-extend 4 -> 8 bits
    lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(n)), scale);
    hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(n, 8))), scale);
  }
}

template <bool kAsymmetric>
float W4DecodeScalar(const uint8_t* codes, int64_t p, float scale, float min) {
  if constexpr (kAsymmetric) {
    return std::fma(static_cast<float>(quant::UnpackUint4(codes, p)), scale, min);
  } else {
    return static_cast<float>(quant::UnpackInt4(codes, p)) * scale;
  }
}

template <bool kAsymmetric>
void DequantizeW4Row(const quant::W4View& w, int64_t row, float* out) {
  const uint8_t* codes = w.codes + row * w.row_bytes();
  const float* scales = w.scales + row * w.vectors_per_row();
  const float* mins = kAsymmetric ? w.mins + row * w.vectors_per_row() : nullptr;
  const int64_t vs = w.vector_size;
  for (int64_t v = 0, b = 0; b < w.k; ++v, b += vs) {
    const int64_t e = std::min(w.k, b + vs);
    const float scale = scales[v];
    const float min = kAsymmetric ? mins[v] : 0.0f;
    int64_t p = b;
    if (b % 2 == 0) {  // the vector starts on a byte boundary
      for (; p + 16 <= e; p += 16) {
        __m256 lo, hi;
        W4Decode16<kAsymmetric>(codes + p / 2, _mm256_set1_ps(scale), _mm256_set1_ps(min), lo, hi);
        _mm256_storeu_ps(out + p, lo);
        _mm256_storeu_ps(out + p + 8, hi);
      }
    }
    for (; p < e; ++p) out[p] = W4DecodeScalar<kAsymmetric>(codes, p, scale, min);
  }
}

// out[r][c] = canonical sum of activation row r (xd + r * kp, fp32, zero padded to kp) times the dequantized
// weight row j + c, decoded in registers sixteen at a time (vector_size is a multiple of 16, so the sixteen
// share one scale); the last k mod 16 weights are decoded one by one and zero padded like the activations.
template <bool kAsymmetric, int R, int C>
void DotTileW4(const float* xd, int64_t kp, const quant::W4View& w, int64_t j, float (&out)[R][C]) {
  __m256 acc[R][C];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm256_setzero_ps();
  }
  const int64_t k = w.k, k16 = k & ~int64_t{15}, vpr = w.vectors_per_row(), row_bytes = w.row_bytes();
  const uint8_t* codes[C];
  const float* scales[C];
  const float* mins[C];
  for (int c = 0; c < C; ++c) {
    codes[c] = w.codes + (j + c) * row_bytes;
    scales[c] = w.scales + (j + c) * vpr;
    mins[c] = kAsymmetric ? w.mins + (j + c) * vpr : nullptr;
  }
  for (int64_t s = 0; s < k16; s += 16) {
    const int64_t v = s / w.vector_size;
    for (int c = 0; c < C; ++c) {
      __m256 lo, hi;
      W4Decode16<kAsymmetric>(codes[c] + s / 2, _mm256_set1_ps(scales[c][v]),
                              kAsymmetric ? _mm256_set1_ps(mins[c][v]) : _mm256_setzero_ps(), lo, hi);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xd + r * kp + s), acc[r][c]);
      for (int r = 0; r < R; ++r) {
        acc[r][c] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xd + r * kp + s + 8), acc[r][c]);
      }
    }
  }
  if (k16 < k) {
    const int64_t v = k16 / w.vector_size;
    for (int c = 0; c < C; ++c) {
      alignas(32) float tail[16] = {};
      const float min = kAsymmetric ? mins[c][v] : 0.0f;
      for (int64_t p = k16; p < k; ++p) tail[p - k16] = W4DecodeScalar<kAsymmetric>(codes[c], p, scales[c][v], min);
      for (int64_t s = k16; s < k; s += 8) {
        const __m256 wv = _mm256_load_ps(tail + (s - k16));
        for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xd + r * kp + s), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) out[r][c] = HorizontalSum(acc[r][c]);
  }
}

template <bool kAsymmetric>
void DotGemmW4(const float* xd, int64_t kp, int64_t m, const quant::W4View& w, const float* bias, float* y,
               int64_t n_begin, int64_t n_end) {
  const UnscaledEpilogue epilogue{bias};
  for (int64_t i0 = 0; i0 < m; i0 += kDotGroupRows) {
    DispatchRows<kDotGroupRows>(std::min<int64_t>(kDotGroupRows, m - i0), [&](auto rows) {
      constexpr int R = decltype(rows)::value;
      constexpr int C = kDotTileCols<R>;
      const float* xi = xd + i0 * kp;
      auto tile = [&](auto cols, int64_t j) {
        constexpr int kCols = decltype(cols)::value;
        float out[R][kCols];
        DotTileW4<kAsymmetric, R, kCols>(xi, kp, w, j, out);
        for (int r = 0; r < R; ++r) {
          for (int c = 0; c < kCols; ++c) y[(i0 + r) * w.n + j + c] = epilogue.Scalar(out[r][c], i0 + r, j + c);
        }
      };
      int64_t j = n_begin;
      for (; j + C <= n_end; j += C) tile(std::integral_constant<int, C>{}, j);
      if (j < n_end) DispatchRows<C>(n_end - j, [&](auto cols) { tile(cols, j); });
    });
  }
}

}  // namespace

void Avx2DequantizeW4Rows(const quant::W4View& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* o = out + (r - row_begin) * w.k;
    if (w.mins != nullptr) {
      DequantizeW4Row<true>(w, r, o);
    } else {
      DequantizeW4Row<false>(w, r, o);
    }
  }
}

void Avx2GemmW4Dot(const float* xd, int64_t kp, int64_t m, const quant::W4View& w, const float* bias, float* y,
                   int64_t n_begin, int64_t n_end) {
  if (w.mins != nullptr) {
    DotGemmW4<true>(xd, kp, m, w, bias, y, n_begin, n_end);
  } else {
    DotGemmW4<false>(xd, kp, m, w, bias, y, n_begin, n_end);
  }
}

bool Avx2GemmF32(const float* x, const float* w, const float* bias, float* y, int64_t n, int64_t k,
                 int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, bool avx512) {
  return FloatGemm<F32Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, avx512, UnscaledEpilogue{bias});
}

bool Avx2GemmBf16(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t n, int64_t k,
                  int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, bool avx512) {
  return FloatGemm<Bf16Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, avx512, UnscaledEpilogue{bias});
}

bool Avx2GemmFp8(const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale,
                 const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                 int64_t n_begin, int64_t n_end, bool avx512) {
  return FloatGemm<Fp8Format>(x, w, y, n, k, m_begin, m_end, n_begin, n_end, avx512,
                              ScaledEpilogue{x_scale, w_scale, bias});
}

bool Avx2GemmInt8(const int8_t* x, const float* x_scale, const int8_t* w, const float* w_scale,
                  const float* bias, float* y, int64_t n, int64_t k, int64_t m_begin, int64_t m_end,
                  int64_t n_begin, int64_t n_end) {
  const ScaledEpilogue epilogue{x_scale, w_scale, bias};
  if (m_end - m_begin <= kDotMaxRowsInt8 || k == 0) {
    return DotGemmInt8(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
  }
  return BlockedGemmInt8(x, w, y, n, k, m_begin, m_end, n_begin, n_end, epilogue);
}

}  // namespace qrag::backend::cpu::internal

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
