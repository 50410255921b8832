// SwiGLU's gate: out[i] = silu(gate[i]) * up[i] (backend.h), and the same fused with the per-token
// quantization of the down projection's input.
#ifndef QRAG_KERNELS_SILU_MUL_CUH_
#define QRAG_KERNELS_SILU_MUL_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quant_format.h"

namespace qrag::kernels {

// n elements; out may alias gate or up.
cudaError_t LaunchSiluMul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);

// gate, up: [rows, cols]; writes codes [rows, ld] of `format` and scales [rows] (kE4M3/kInt8).
cudaError_t LaunchSiluMulQuantize(const float* gate, const float* up, int64_t rows, int cols, QuantFormat format,
                                  int ld, void* codes, float* scales, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_SILU_MUL_CUH_
