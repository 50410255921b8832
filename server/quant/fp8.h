// OCP 8-bit floating point (OCP OFP8 specification v1.0, 2023): E4M3 and E5M2, bit-exact.
//
// E4M3: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN; max normal 448;
//       min subnormal 2^-9.
// E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like inf/NaN; max normal 57344.
// Conversions from fp32 round to nearest, ties to even, and saturate (the spec's "saturation mode"): finite
// values beyond the max and +-inf become +-max. NaN becomes NaN (E4M3 0x7F/0xFF by sign; E5M2 0x7E/0xFE).
#ifndef QRAG_SERVER_QUANT_FP8_H_
#define QRAG_SERVER_QUANT_FP8_H_

#include <cstdint>

namespace qrag::quant {

inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;

uint8_t FloatToE4M3(float x);
float E4M3ToFloat(uint8_t v);
uint8_t FloatToE5M2(float x);
float E5M2ToFloat(uint8_t v);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_FP8_H_
