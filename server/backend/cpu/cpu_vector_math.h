// Vectorized elementwise math of the CPU backend's fast encoder ops: exp for the attention softmax and the
// exact (erf) GELU. AVX-512 or AVX2/FMA where the CPU has it, a portable loop with the same polynomials
// otherwise, so results do not depend on the thread split or on where an element falls in the array.
//
// Accuracy (checked against std::erf / std::exp in double by cpu_vector_math_test):
//  - ExpShiftedSum: exp by range reduction x = n ln2 + r, |r| <= ln2 / 2, and a degree-6 polynomial; within
//    2 ulp of exp for every finite input (underflow flushes to +0 below -87.3);
//  - GeluErf: x/2 erfc(-x/sqrt2) with erfc by a Chebyshev fit (fractional error < 1.2e-7) times the exp
//    above: |error| <= 2e-7 |x| and relative error <= 4e-7 (1 + x^2) (cpu_vector_math_test).
#ifndef QRAG_SERVER_BACKEND_CPU_CPU_VECTOR_MATH_H_
#define QRAG_SERVER_BACKEND_CPU_CPU_VECTOR_MATH_H_

#include <cstdint>

namespace qrag::backend::cpu {

// x[i] = exp(x[i] - shift) for i < n; returns the sum of the new values (accumulated in eight lanes, then
// a fixed tree: the same order on the AVX2 and portable paths).
float ExpShiftedSum(float* x, int64_t n, float shift);

// out[i] = x[i] / 2 * (1 + erf(x[i] / sqrt(2))) for i < n; out may equal x.
void GeluErf(const float* x, int64_t n, float* out);

// Each row of the row-major [rows, cols] x replaced by its softmax, in place: exp(x - max) / sum. AVX-512
// where the CPU has it (sums over 16 lanes), else the row max, ExpShiftedSum and a scaling loop; the
// elements' exp is the one of ExpShiftedSum either way.
void SoftmaxRows(float* x, int64_t rows, int64_t cols);

// out[r] = LayerNorm(x[r] (+ y[r])) * weight + bias over rows of `dim`, fp32 accumulation. With y non-null,
// x[r] += y[r] first (x keeps the sum: the residual stream). out may equal x. AVX-512 when dim is a multiple
// of 16 and the CPU has it; the lane-wise sums make the last bits differ from a sequential loop.
void LayerNormRows(float* x, const float* y, const float* weight, const float* bias, int64_t rows, int64_t dim,
                   float eps, float* out);

// quant::QuantizeRowsInt8, bit for bit (the same scale, division, ties-to-even rounding, clamp and NaN -> 0),
// with AVX-512 where the CPU has AVX-512F/BW, else that function itself.
void QuantizeRowsInt8Fast(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scales);

// out[r][j] = acc[r][j] * (x_scale[r] * w_scale[j]) + bias[j] (bias may be null) over rows x n, row-major with
// leading dimension n; AVX-512 where the CPU has it.
void DequantizeInt32(const int32_t* acc, int64_t rows, int64_t n, const float* x_scale, const float* w_scale,
                     const float* bias, float* out);

}  // namespace qrag::backend::cpu

#endif  // QRAG_SERVER_BACKEND_CPU_CPU_VECTOR_MATH_H_
