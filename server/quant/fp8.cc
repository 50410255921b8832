// OCP 8-bit floating point conversions (OCP OFP8 specification v1.0, June 2023).
//
// Encoding works on the fp32 bit pattern so that it is exact and independent of the floating-point
// environment (rounding mode, flush-to-zero): normal results round the fp32 mantissa to the format's
// mantissa width with round-to-nearest-even on the bits; results below the format's smallest normal are
// scaled by a power of two into an integer count of the smallest subnormal step and rounded the same way.
// Saturation (the spec's saturating conversion mode, which fp8.h requires) is applied before rounding: every
// magnitude above the largest finite value maps to it, which is also where round-to-nearest would land for
// magnitudes up to max + ulp/2 and is the saturating result beyond.
#include "server/quant/fp8.h"

#include <cstring>

#include "server/quant/bits.h"

namespace qrag::quant {
namespace {

// Rounds a non-negative v < 2^22 to the nearest integer, ties to even. v - trunc(v) is exact for such v,
// so this does not depend on the current rounding mode.
uint32_t RoundHalfEven(float v) {
  uint32_t r = static_cast<uint32_t>(v);
  const float frac = v - static_cast<float>(r);
  if (frac > 0.5f || (frac == 0.5f && (r & 1u) != 0)) ++r;
  return r;
}

// Encodes a finite magnitude (fp32 bits without the sign) that is at most the format's largest finite
// value. Returns the 7-bit code (exponent and mantissa fields).
template <int kExpBits, int kManBits>
uint8_t EncodeMagnitude(uint32_t abs_bits) {
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  // Smallest normal 2^(1 - bias); below it the format is subnormal with step 2^(1 - bias - man).
  constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(127 + 1 - kBias) << 23;
  if (abs_bits < kMinNormalBits) {
    // 2^(bias - 1 + man) as an fp32 value; the product is exact (a power-of-two scaling of a number that
    // stays in the normal fp32 range or is a subnormal scaled up) and is < 2^man. A result of 2^man is
    // the smallest normal code, which the field layout gives for free.
    const float to_steps = FloatFromBits(static_cast<uint32_t>(127 + kBias - 1 + kManBits) << 23);
    return static_cast<uint8_t>(RoundHalfEven(FloatFromBits(abs_bits) * to_steps));
  }
  // Normal: drop 23 - man mantissa bits with round-to-nearest-even (add half an ulp minus one plus the
  // lowest kept bit, then truncate); a carry out of the mantissa correctly bumps the exponent. Then rebias
  // the exponent from 127 to the format's bias.
  constexpr int kShift = 23 - kManBits;
  const uint32_t rounded = abs_bits + ((1u << (kShift - 1)) - 1u) + ((abs_bits >> kShift) & 1u);
  return static_cast<uint8_t>((rounded >> kShift) - (static_cast<uint32_t>(127 - kBias) << kManBits));
}

}  // namespace

uint8_t FloatToE4M3(float x) {
  const uint32_t u = FloatBits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs_bits = u & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7f;     // NaN: S.1111.111 is E4M3's only NaN
  if (abs_bits > FloatBits(kE4M3Max)) return sign | 0x7e;  // saturate, +-inf included
  return sign | EncodeMagnitude<4, 3>(abs_bits);
}

float E4M3ToFloat(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t exp = (v >> 3) & 0xfu;
  const uint32_t man = v & 0x7u;
  if (exp == 0xf && man == 0x7) return FloatFromBits(sign | 0x7fc00000u);  // the only NaN encoding
  if (exp == 0) {
    // Subnormal: man * 2^-9, exact in fp32.
    const float f = static_cast<float>(man) * 0.001953125f;
    return sign != 0 ? -f : f;
  }
  // Normal: 2^(exp - 7) * (1 + man / 8); the fp32 exponent field is exp - 7 + 127.
  return FloatFromBits(sign | ((exp + 120u) << 23) | (man << 20));
}

uint8_t FloatToE5M2(float x) {
  const uint32_t u = FloatBits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs_bits = u & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7e;     // NaN (qrag's canonical quiet NaN, per fp8.h)
  if (abs_bits > FloatBits(kE5M2Max)) return sign | 0x7b;  // saturate, +-inf included
  return sign | EncodeMagnitude<5, 2>(abs_bits);
}

float E5M2ToFloat(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t exp = (v >> 2) & 0x1fu;
  const uint32_t man = v & 0x3u;
  if (exp == 0x1f) return FloatFromBits(sign | (man == 0 ? 0x7f800000u : 0x7fc00000u));  // inf / NaN
  if (exp == 0) {
    // Subnormal: man * 2^-16, exact in fp32.
    const float f = static_cast<float>(man) * 1.52587890625e-05f;
    return sign != 0 ? -f : f;
  }
  // Normal: 2^(exp - 15) * (1 + man / 4); the fp32 exponent field is exp - 15 + 127.
  return FloatFromBits(sign | ((exp + 112u) << 23) | (man << 21));
}

}  // namespace qrag::quant
