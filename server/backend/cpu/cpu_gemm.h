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
//  - fast: AVX2/FMA/F16C (chosen at run time; a portable blocked path where AVX2 is absent), threads
//    over `pool`, fp32 accumulation (int8: exact int32, so bit-identical to the reference). The fast fp8
//    path propagates NaN codes of x (0x7F/0xFF) to the output rows they touch; the AVX2 kernels read a NaN
//    code of w as the value 480, so weights are expected to be finite.
#ifndef QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_
#define QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_

#include <cstdint>

#include "server/common/thread_pool.h"

namespace qrag::backend::cpu {

struct GemmKernelOptions {
  bool reference = false;
  ThreadPool* pool = nullptr;  // null: run on the calling thread
  // Fast path only: false runs the portable blocked kernels even where AVX2 exists (tests cover them so).
  bool allow_avx2 = true;
};

void GemmF32(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias, float* y,
             const GemmKernelOptions& options);
void GemmBf16(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k, const float* bias,
              float* y, const GemmKernelOptions& options);
void GemmFp8(const uint8_t* x, const float* x_scale, int64_t m, const uint8_t* w, const float* w_scale,
             int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options);
void GemmInt8(const int8_t* x, const float* x_scale, int64_t m, const int8_t* w, const float* w_scale,
              int64_t n, int64_t k, const float* bias, float* y, const GemmKernelOptions& options);

// True when the fast kernels use AVX2 on this machine.
bool CpuHasAvx2();

}  // namespace qrag::backend::cpu

#endif  // QRAG_SERVER_BACKEND_CPU_CPU_GEMM_H_
