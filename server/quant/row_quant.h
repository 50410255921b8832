// Symmetric per-row quantization of fp32 matrices: the per-output-channel weight scales and the dynamic
// per-token activation scales of the fp8 and int8 schemes (backend/precision.h).
//
// For each row r: amax = max |x[r, :]|; scale[r] = amax / qmax (qmax = 448 for E4M3, 127 for int8), or 1
// when amax is 0 (or not finite rows: NaN/inf elements are treated by the format's saturation);
// q[r, c] = Encode(x[r, c] / scale[r]) with IEEE fp32 division and round-to-nearest-even (int8 clamps to
// [-127, 127]). The GPU kernels use the same formulas, so both produce identical codes.
#ifndef QRAG_SERVER_QUANT_ROW_QUANT_H_
#define QRAG_SERVER_QUANT_ROW_QUANT_H_

#include <cstdint>

namespace qrag::quant {

void QuantizeRowsE4M3(const float* x, int64_t rows, int64_t cols, uint8_t* q, float* scales);
void QuantizeRowsInt8(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scales);
// Rounds every element to bf16 (round to nearest even).
void RoundToBf16(const float* x, int64_t n, uint16_t* out);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_ROW_QUANT_H_
