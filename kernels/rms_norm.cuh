// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight (backend.h), one block per row;
// optionally fused with the per-token quantization of the next GEMM's input (quantize.cuh formats).
#ifndef QRAG_KERNELS_RMS_NORM_CUH_
#define QRAG_KERNELS_RMS_NORM_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quant_format.h"

namespace qrag::kernels {

// In place (out == x) is allowed.
cudaError_t LaunchRmsNorm(const float* x, const float* weight, int64_t rows, int dim, float eps, float* out,
                          cudaStream_t stream);

// Writes the normalized rows quantized: codes [rows, ld] of `format` and scales [rows] (kE4M3/kInt8).
cudaError_t LaunchRmsNormQuantize(const float* x, const float* weight, int64_t rows, int dim, float eps,
                                  QuantFormat format, int ld, void* codes, float* scales, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_RMS_NORM_CUH_
