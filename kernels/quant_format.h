// Per-token activation formats written by the quantizing kernels (quantize.cuh, rms_norm.cuh, silu_mul.cuh).
#ifndef QRAG_KERNELS_QUANT_FORMAT_H_
#define QRAG_KERNELS_QUANT_FORMAT_H_

namespace qrag::kernels {

// kE4M3 and kInt8 write one byte per element plus one fp32 scale per row (server/quant/row_quant.h);
// kBF16 writes bf16 bit patterns (uint16) and no scale.
enum class QuantFormat { kE4M3, kInt8, kBF16 };

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_QUANT_FORMAT_H_
