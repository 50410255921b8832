// CPU GEMM kernels of the four served schemes: y[m, n] = sum_k x[m, k] * w[n, k] (W row-major [n, k], as
// torch.nn.Linear), then for fp8/int8 y = acc * (x_scale[m] * w_scale[n]), then + bias[n] when bias is
// not null. fp8 operands are E4M3 codes, bf16 operands bf16 bit patterns.
//
// Rounding of the epilogue, identical in both implementations so that exact sums give bit-identical outputs:
// acc is rounded once to fp32; s = x_scale[m] * w_scale[n] in fp32; y = fma(acc, s, bias[n]) (one rounding)
// or acc * s without bias; fp32/bf16 have no scales and compute y = acc + bias[n].
//
// Two implementations behind one switch (GemmKernelOptions::reference):
//  - reference: plain loops, products accumulated in double (int8: exact int32), the oracle;
//  - fast: AVX2/FMA/F16C (chosen at run time; a portable path where AVX2 is absent, or where
//    allow_avx2 is false; the float blocked GEMM's micro-kernel in AVX-512F where present), threads over `pool`, fp32 accumulation (int8: exact int32, so bit-identical to
//    the reference).
//
// Batch invariance of the fast kernels. Every output element y[i, j] is a function of x[i, :], w[j, :],
// x_scale[i], w_scale[j] and bias[j] alone, bit for bit: it does not depend on m, on the other rows of x,
// on n or the columns around j, on the pool's thread count or split, on the path taken (m = 1, small m,
// blocked large m) or on the kernel family (AVX2 or portable). A request's logits are therefore the same
// whether it runs alone or batched with others. The fp32, bf16 and fp8 fast kernels all compute, for each
// element, exactly this sequence of fp32 operations (the canonical order):
//   1. a[p] = x[i, p], b[p] = w[j, p] decoded to fp32 for p < k (exact in every format), and
//      a[p] = b[p] = +0 for k <= p < K8, where K8 is k rounded up to a multiple of 8;
//   2. eight lanes acc[0..7] = +0; for p = 0, 1, ..., K8 - 1 in this order:
//      acc[p % 8] = fma(a[p], b[p], acc[p % 8])  (one rounding each);
//   3. sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
//   4. the epilogue above with acc = sum.
// Int8 sums exactly in integers, then rounds once to fp32 (its order cannot show). The fast paths agree on
// special values too: an fp8 activation NaN code (0x7F/0xFF) turns its whole output row into the quiet NaN
// 0x7FC00000, and an fp8 weight NaN code is read as +-480 (weights are expected to be finite; the reference
// propagates the NaN instead). Other NaNs (fp32/bf16 inputs) propagate with unspecified payloads.
#ifndef QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_
#define QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "server/common/thread_pool.h"
#include "server/quant/w4.h"

namespace qrag::backend::cpu {

struct GemmKernelOptions {
  bool reference = false;
  ThreadPool* pool = nullptr;  // null: run on the calling thread
  // Fast path only: false runs the portable kernels even where AVX2 exists (tests cover them so).
  bool allow_avx2 = true;
  // Fast path with AVX2 only: false keeps the float blocked GEMM (fp32/bf16/fp8, many rows) on its AVX2
  // micro-kernel where AVX-512F exists (tests compare both; the outputs are bit-identical).
  bool allow_avx512 = true;
};

// Each returns RESOURCE_EXHAUSTED (the output then holds no reliable values) when a worker thread's packing
// buffers cannot be allocated; the reference path and the portable kernels need none and cannot fail.
absl::Status GemmF32(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias,
                     float* y, const GemmKernelOptions& options);
absl::Status GemmBf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                      const float* bias, float* y, const GemmKernelOptions& options);
absl::Status GemmFp8(const uint8_t* x, const float* x_scale, int64_t m, const uint8_t* w, const float* w_scale,
                     int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options);
absl::Status GemmInt8(const int8_t* x, const float* x_scale, int64_t m, const int8_t* w, const float* w_scale,
                      int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options);

// w4 (quant/w4.h): y = x W^T (+ bias) with W the dequantized 4-bit weight (code * vector scale, or
// fma(code, scale, minimum) on the asymmetric grid: one fp32 rounding). Reference: products of the fp32
// values accumulated in double, rounded once, then + bias[j]. Fast: every element equals GemmF32 with the
// whole dequantized weight, bit for bit (batch-invariant as the fp32 kernel is), on each of its paths:
// up to 16 activation rows with AVX2 and vectors of a multiple of 16 weights, a dot kernel that decodes the
// weights in registers in the canonical order (threads over weight rows); otherwise weight rows dequantized
// (AVX2 or portable) into tiles of 16 rows, or slabs for 64 rows and more, that run through GemmF32.
absl::Status GemmW4(const float* x, int64_t m, const quant::W4View& w, const float* bias, float* y,
                    const GemmKernelOptions& options);

// True when the fast kernels use AVX2 on this machine.
bool CpuHasAvx2();
// True when the float blocked GEMM also uses its AVX-512F micro-kernel (12 x 16 register tile).
bool CpuHasAvx512();

}  // namespace qrag::backend::cpu

#endif  // QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_
