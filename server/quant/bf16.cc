#include "server/quant/bf16.h"

#include <cstring>

#include "server/quant/bits.h"

namespace qrag::quant {

uint16_t FloatToBf16(float x) {
  uint32_t u = FloatBits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate. Overflow rounds to inf.
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float Bf16ToFloat(uint16_t v) { return FloatFromBits(static_cast<uint32_t>(v) << 16); }

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return FloatFromBits(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return FloatFromBits(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return FloatFromBits(sign);
  // Subnormal: value = mant * 2^-24, exact in fp32.
  float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

uint16_t FloatToHalf(float x) {
  uint32_t u = FloatBits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;  // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520 -> inf (or is inf)
  if (u < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
    float v = FloatFromBits(u) * 16777216.0f;  // exact scaling by 2^24
    // Round half to even on a small non-negative float.
    float fl = static_cast<float>(static_cast<uint32_t>(v));
    float diff = v - fl;
    uint32_t r = static_cast<uint32_t>(fl);
    if (diff > 0.5f || (diff == 0.5f && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits (nearest even).
  uint32_t rounded = u + 0xfffu + ((u >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded >> 13) - (112u << 10));
}

}  // namespace qrag::quant
