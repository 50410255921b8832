// AVX2/FMA and portable implementations of cpu_vector_math.h. Both evaluate the same polynomials with the
// same fused operations in the same order, lane by lane, so an element's value does not depend on which
// path or which position in the array computed it.
#include "server/backend/cpu/cpu_vector_math.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "server/backend/cpu/cpu_gemm.h"
#include "server/common/cpu_features.h"
#include "server/quant/row_quant.h"

// GCC 12 reports the _mm512_undefined_* placeholders inside AVX-512 intrinsics (reduce, extract, masked
// min/max, narrowing moves) as uninitialized when it inlines them: false positives, silenced for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace qrag::backend::cpu {
namespace {

// exp: n = round(x / ln2), r = x - n ln2 (ln2 split in two for an exact product), e^r by a degree-6
// Taylor/minimax polynomial (Cephes expf coefficients), scaled by 2^n through the exponent bits.
constexpr float kExpHi = 88.3762626647949f;
constexpr float kExpLo = -87.3365478515625f;  // below: the result flushes to +0
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

float ExpScalar(float x) {
  if (std::isnan(x)) return x;
  if (x < kExpLo) return 0.0f;
  if (x > kExpHi) x = kExpHi;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  float p = kExpP[0];
  for (int i = 1; i < 6; ++i) p = std::fma(p, r, kExpP[i]);
  const float r2 = r * r;
  const float e = std::fma(p, r2, r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

// erfc(z) for z >= 0 by the Chebyshev fit of Numerical Recipes' erfcc (fractional error < 1.2e-7):
// t exp(-z^2 + P(t)), t = 1 / (1 + z / 2). GELU then is x/2 * erfc(|x|/sqrt2) for x < 0 (a relative error
// as small as erfc's, even deep in the negative tail) and x/2 * (2 - erfc(x/sqrt2)) for x >= 0.
constexpr float kErfcP[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                              -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
constexpr float kInvSqrt2 = 0.70710678118654752f;

float GeluScalar(float x) {
  if (std::isnan(x)) return x;
  const float z = std::fabs(x) * kInvSqrt2;
  const float t = 1.0f / std::fma(0.5f, z, 1.0f);
  float poly = kErfcP[0];
  for (int i = 1; i < 10; ++i) poly = std::fma(poly, t, kErfcP[i]);
  const float erfc = t * ExpScalar(std::fma(-z, z, poly));
  const float factor = x < 0.0f ? erfc : 2.0f - erfc;
  return 0.5f * x * factor;
}

float ReduceLanes(const float lanes[8]) {
  return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

__m256 Exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(kExpLo), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(kExpHi), x);  // a NaN x stays NaN (minps returns its second operand)
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP[i]));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(e, _mm256_castsi256_ps(bits)));
}

float ExpShiftedSumAvx2(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  for (int l = 0; i < n; ++i, ++l) {
    x[i] = ExpScalar(x[i] - shift);
    lanes[l] += x[i];
  }
  return ReduceLanes(lanes);
}

void GeluErfAvx2(const float* x, int64_t n, float* out) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign_mask, v), _mm256_set1_ps(kInvSqrt2));
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                   _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, _mm256_set1_ps(1.0f)));
    __m256 poly = _mm256_set1_ps(kErfcP[0]);
    for (int j = 1; j < 10; ++j) poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfcP[j]));
    const __m256 erfc = _mm256_mul_ps(t, Exp8(_mm256_fnmadd_ps(z, z, poly)));
    const __m256 negative = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 factor = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), erfc), erfc, negative);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), factor));
  }
  for (; i < n; ++i) out[i] = GeluScalar(x[i]);
}

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

// Exp8 on 16 lanes: the same operations in the same order, so each lane's bits equal Exp8's and ExpScalar's.
__m512 Exp16(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpLo), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_set1_ps(kExpHi), x);  // a NaN x stays NaN (minps returns its second operand)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP[i]));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~underflow), e, _mm512_castsi512_ps(bits));
}

// GeluErfAvx2's arithmetic on 16 lanes (bit for bit the same per element); the tail through a masked vector.
__m512 Gelu16(__m512 v) {
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(v), _mm512_set1_ps(kInvSqrt2));
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, _mm512_set1_ps(1.0f)));
  __m512 poly = _mm512_set1_ps(kErfcP[0]);
  for (int j = 1; j < 10; ++j) poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfcP[j]));
  const __m512 erfc = _mm512_mul_ps(t, Exp16(_mm512_fnmadd_ps(z, z, poly)));
  const __mmask16 negative = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 factor = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(2.0f), erfc), erfc);
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), factor);
}

void GeluErfAvx512(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, Gelu16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, Gelu16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void SoftmaxRowsAvx512(float* x, int64_t rows, int64_t cols) {
  const int64_t body = cols / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (cols - body)) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < body; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(row + j));
    if (tail != 0) vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_maskz_loadu_ps(tail, row + body));
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < body; j += 16) {
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), shift));
      _mm512_storeu_ps(row + j, e);
      acc = _mm512_add_ps(acc, e);
    }
    if (tail != 0) {
      const __m512 e = _mm512_maskz_mov_ps(tail, Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + body), shift)));
      _mm512_mask_storeu_ps(row + body, tail, e);
      acc = _mm512_add_ps(acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
    for (int64_t j = 0; j < body; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), inv));
    if (tail != 0) {
      _mm512_mask_storeu_ps(row + body, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + body), inv));
    }
  }
}

// One row of LayerNormRows: dim a multiple of 16 (the caller checks).
void LayerNormRowAvx512(float* x, const float* y, const float* weight, const float* bias, int64_t dim, float eps,
                        float* out) {
  __m512 s = _mm512_setzero_ps();
  for (int64_t j = 0; j < dim; j += 16) {
    __m512 v = _mm512_loadu_ps(x + j);
    if (y != nullptr) {
      v = _mm512_add_ps(v, _mm512_loadu_ps(y + j));
      _mm512_storeu_ps(x + j, v);
    }
    s = _mm512_add_ps(s, v);
  }
  const float mean = _mm512_reduce_add_ps(s) / static_cast<float>(dim);
  const __m512 vm = _mm512_set1_ps(mean);
  __m512 ss = _mm512_setzero_ps();
  for (int64_t j = 0; j < dim; j += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + j), vm);
    ss = _mm512_fmadd_ps(d, d, ss);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(ss) / static_cast<float>(dim) + eps));
  for (int64_t j = 0; j < dim; j += 16) {
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm), inv);
    _mm512_storeu_ps(out + j, _mm512_fmadd_ps(d, _mm512_loadu_ps(weight + j), _mm512_loadu_ps(bias + j)));
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

void LayerNormRowScalar(float* x, const float* y, const float* weight, const float* bias, int64_t dim, float eps,
                        float* out) {
  if (y != nullptr) {
    for (int64_t j = 0; j < dim; ++j) x[j] += y[j];
  }
  float s = 0;
  for (int64_t j = 0; j < dim; ++j) s += x[j];
  const float mean = s / static_cast<float>(dim);
  float ss = 0;
  for (int64_t j = 0; j < dim; ++j) ss += (x[j] - mean) * (x[j] - mean);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t j = 0; j < dim; ++j) out[j] = (x[j] - mean) * inv * weight[j] + bias[j];
}

}  // namespace

__attribute__((target("avx512f,avx512bw"))) void QuantizeRowsInt8Avx512(const float* x, int64_t rows,
                                                                         int64_t cols, int8_t* q, float* scales) {
  const __m512 inf = _mm512_set1_ps(INFINITY);
  const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    // quant's RowScale: amax / 127, or 1 for an all-zero row, a NaN or an infinity, or an underflow to 0.
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(row + c));
      bad |= _mm512_cmp_ps_mask(a, inf, _CMP_NLT_UQ);  // inf or NaN
      vmax = _mm512_max_ps(vmax, a);
    }
    float amax = _mm512_reduce_max_ps(vmax);
    bool finite = bad == 0;
    for (; c < cols; ++c) {
      const float a = std::fabs(row[c]);
      if (!std::isfinite(a)) finite = false;
      if (a > amax) amax = a;
    }
    float scale = 1.0f;
    if (finite && amax != 0.0f) {
      scale = amax / 127.0f;
      if (!(scale > 0.0f)) scale = 1.0f;
    }
    scales[r] = scale;
    int8_t* out = q + r * cols;
    const __m512 vs = _mm512_set1_ps(scale);
    for (c = 0; c + 16 <= cols; c += 16) {
      const __m512 v = _mm512_div_ps(_mm512_loadu_ps(row + c), vs);
      const __mmask16 ordered = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
      const __m512 clamped = _mm512_max_ps(_mm512_min_ps(v, hi), lo);
      const __m512i i = _mm512_maskz_cvt_roundps_epi32(ordered, clamped, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm512_cvtsepi32_epi8(i));
    }
    for (; c < cols; ++c) {
      float v = row[c] / scale;
      if (std::isnan(v)) {
        out[c] = 0;
        continue;
      }
      v = std::min(std::max(v, -127.0f), 127.0f);
      out[c] = static_cast<int8_t>(std::nearbyint(v));  // the default rounding mode: to nearest, ties to even
    }
  }
}

void DequantizeInt32Scalar(const int32_t* acc, int64_t rows, int64_t n, const float* x_scale, const float* w_scale,
                           const float* bias, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      out[r * n + j] = static_cast<float>(acc[r * n + j]) * (x_scale[r] * w_scale[j]) + (bias ? bias[j] : 0.0f);
    }
  }
}

__attribute__((target("avx512f"))) void DequantizeInt32Avx512(const int32_t* acc, int64_t rows, int64_t n,
                                                               const float* x_scale, const float* w_scale,
                                                               const float* bias, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 sx = _mm512_set1_ps(x_scale[r]);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m512 a = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + r * n + j));
      const __m512 s = _mm512_mul_ps(sx, _mm512_loadu_ps(w_scale + j));
      __m512 y = _mm512_mul_ps(a, s);
      if (bias != nullptr) y = _mm512_add_ps(y, _mm512_loadu_ps(bias + j));
      _mm512_storeu_ps(out + r * n + j, y);
    }
    for (; j < n; ++j) {
      out[r * n + j] = static_cast<float>(acc[r * n + j]) * (x_scale[r] * w_scale[j]) + (bias ? bias[j] : 0.0f);
    }
  }
}

void DequantizeInt32(const int32_t* acc, int64_t rows, int64_t n, const float* x_scale, const float* w_scale,
                     const float* bias, float* out) {
  if (GetCpuFeatures().avx512f) return DequantizeInt32Avx512(acc, rows, n, x_scale, w_scale, bias, out);
  DequantizeInt32Scalar(acc, rows, n, x_scale, w_scale, bias, out);
}

void QuantizeRowsInt8Fast(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scales) {
  const CpuFeatures& f = GetCpuFeatures();
  if (f.avx512f && f.avx512bw) return QuantizeRowsInt8Avx512(x, rows, cols, q, scales);
  quant::QuantizeRowsInt8(x, rows, cols, q, scales);
}

float ExpShiftedSum(float* x, int64_t n, float shift) {
  if (CpuHasAvx2()) return ExpShiftedSumAvx2(x, n, shift);
  float lanes[8] = {};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = ExpScalar(x[i] - shift);
    lanes[i % 8] += x[i];
  }
  return ReduceLanes(lanes);
}

void GeluErf(const float* x, int64_t n, float* out) {
  if (GetCpuFeatures().avx512f) return GeluErfAvx512(x, n, out);
  if (CpuHasAvx2()) return GeluErfAvx2(x, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = GeluScalar(x[i]);
}

}  // namespace qrag::backend::cpu

namespace qrag::backend::cpu {

void SoftmaxRows(float* x, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  if (GetCpuFeatures().avx512f) return SoftmaxRowsAvx512(x, rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    const float inv = 1.0f / ExpShiftedSum(row, cols, *std::max_element(row, row + cols));
    for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
  }
}

void LayerNormRows(float* x, const float* y, const float* weight, const float* bias, int64_t rows, int64_t dim,
                   float eps, float* out) {
  const bool avx512 = GetCpuFeatures().avx512f && dim % 16 == 0;
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * dim;
    const float* yr = y == nullptr ? nullptr : y + r * dim;
    if (avx512) {
      LayerNormRowAvx512(xr, yr, weight, bias, dim, eps, out + r * dim);
    } else {
      LayerNormRowScalar(xr, yr, weight, bias, dim, eps, out + r * dim);
    }
  }
}

}  // namespace qrag::backend::cpu
