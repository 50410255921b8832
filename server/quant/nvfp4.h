// NVFP4 (NVIDIA Blackwell, "Introducing NVFP4", 2025): FP4 E2M1 elements in blocks of 16 along the
// reduction dimension, each block with an FP8 E4M3 scale, and one fp32 scale per tensor. Two-level scaling,
// as NVIDIA's recipe (TensorRT Model Optimizer) computes it:
//   tensor_scale = amax(tensor) / (6 * 448)            (1 when the tensor is all zero)
//   block_scale  = E4M3(amax(block) / 6 / tensor_scale)   (round to nearest even, saturating)
//   element      = E2M1(x / (decoded block_scale * tensor_scale))  (round to nearest even, saturating;
//                                                        a zero block scale gives zero elements)
//   x'           = E2M1 value * decoded block_scale * tensor_scale
// The last block may be shorter than 16 elements.
#ifndef QRAG_SERVER_QUANT_NVFP4_H_
#define QRAG_SERVER_QUANT_NVFP4_H_

#include <cstdint>

namespace qrag::quant {

inline constexpr int kNvfp4BlockSize = 16;


// x[0, n) -> codes[n] (E2M1 codes, one per byte), block_scales[ceil(n / 16)] (E4M3 codes). Returns the
// fp32 tensor scale.
float Nvfp4Quantize(const float* x, int64_t n, uint8_t* block_scales, uint8_t* codes);
void Nvfp4Dequantize(float tensor_scale, const uint8_t* block_scales, const uint8_t* codes, int64_t n, float* out);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_NVFP4_H_
