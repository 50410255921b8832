// Per-token (per-row) quantization of fp32 activations for the GEMMs, and dequantization back to fp32.
// Formulas: device_util.cuh / server/quant/row_quant.h (identical codes and scales).
#ifndef QRAG_KERNELS_QUANTIZE_CUH_
#define QRAG_KERNELS_QUANTIZE_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quant_format.h"

namespace qrag::kernels {

// x: [rows, cols] fp32. out: [rows, ld] codes of `format` (ld >= cols; the padding columns get zero codes).
// scales: [rows] fp32 for kE4M3/kInt8 (unused, may be null, for kBF16).
cudaError_t LaunchQuantizeRows(const float* x, int64_t rows, int cols, int ld, QuantFormat format, void* out,
                               float* scales, cudaStream_t stream);

// out[r, c] = decode(q[r, c]) * scales[r] for c < cols (q rows of `ld` elements); kBF16 ignores scales.
cudaError_t LaunchDequantizeRows(const void* q, const float* scales, int64_t rows, int cols, int ld,
                                 QuantFormat format, float* out, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_QUANTIZE_CUH_
