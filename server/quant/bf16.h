// bfloat16 and IEEE binary16 conversions.
#ifndef QRAG_SERVER_QUANT_BF16_H_
#define QRAG_SERVER_QUANT_BF16_H_

#include <cstdint>

namespace qrag::quant {

// fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN; inf stays inf.
uint16_t FloatToBf16(float x);
// Exact.
float Bf16ToFloat(uint16_t v);
// IEEE binary16 -> fp32, exact (subnormals, inf, NaN included).
float HalfToFloat(uint16_t v);
// fp32 -> IEEE binary16, round to nearest even, overflow -> inf.
uint16_t FloatToHalf(float x);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_BF16_H_
