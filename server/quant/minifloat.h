// The narrow floating-point element formats of OCP Microscaling (MX) v1.0, section 5.3: FP6 E2M3, FP6 E3M2
// and FP4 E2M1. None has infinities or NaN; every code is finite:
//   E2M3: bias 1, max 7.5,  min subnormal 0.125        E3M2: bias 3, max 28, min subnormal 0.0625
//   E2M1: bias 1, max 6,    values 0, 0.5, 1, 1.5, 2, 3, 4, 6
// A code is sign | exponent | mantissa in the low 1 + e + m bits. Conversion from fp32 rounds to nearest,
// ties to even (ties go to the code with an even mantissa, i.e. an even code), and saturates: every
// magnitude beyond the max (+-inf included) becomes +-max, as the MX spec requires for conversions to
// these formats. NaN, which the formats cannot hold, encodes as +0; MX blocks carry NaN in their shared
// scale instead (mx.h).
#ifndef QRAG_SERVER_QUANT_MINIFLOAT_H_
#define QRAG_SERVER_QUANT_MINIFLOAT_H_

#include <cstdint>

namespace qrag::quant {

struct MiniFloatFormat {
  int exp_bits = 2;
  int man_bits = 1;

  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  int bits() const { return 1 + exp_bits + man_bits; }
  uint8_t sign_mask() const { return static_cast<uint8_t>(1u << (exp_bits + man_bits)); }
  // Number of codes (2^bits).
  int num_codes() const { return 1 << bits(); }
};

inline constexpr MiniFloatFormat kE2M3{2, 3};
inline constexpr MiniFloatFormat kE3M2{3, 2};
inline constexpr MiniFloatFormat kE2M1{2, 1};

// Exact.
float MiniFloatToFloat(const MiniFloatFormat& format, uint8_t code);
// The largest finite value.
float MiniFloatMax(const MiniFloatFormat& format);
uint8_t FloatToMiniFloat(const MiniFloatFormat& format, float x);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_MINIFLOAT_H_
