#include "server/quant/minifloat.h"

#include <cmath>

namespace qrag::quant {

float MiniFloatToFloat(const MiniFloatFormat& f, uint8_t code) {
  const int man_mask = (1 << f.man_bits) - 1;
  const int exp = (code >> f.man_bits) & ((1 << f.exp_bits) - 1);
  const int man = code & man_mask;
  // Subnormal: man * 2^(1 - bias - m); normal: (2^m + man) * 2^(exp - bias - m). Both exact in fp32.
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), 1 - f.bias() - f.man_bits)
                             : std::ldexp(static_cast<float>((1 << f.man_bits) + man), exp - f.bias() - f.man_bits);
  return (code & f.sign_mask()) != 0 ? -mag : mag;
}

float MiniFloatMax(const MiniFloatFormat& f) {
  return MiniFloatToFloat(f, static_cast<uint8_t>(f.sign_mask() - 1));
}

uint8_t FloatToMiniFloat(const MiniFloatFormat& f, float x) {
  if (std::isnan(x)) return 0;
  const uint8_t sign = std::signbit(x) ? f.sign_mask() : 0;
  const double a = std::fabs(static_cast<double>(x));
  // The magnitudes increase with the code, so the nearest code is found by a scan over at most 32 codes:
  // the last code whose value is <= a, then the choice between it and the next one.
  const int top = f.sign_mask() - 1;
  int lo = 0;
  while (lo < top && MiniFloatToFloat(f, static_cast<uint8_t>(lo + 1)) <= a) ++lo;
  if (lo == top) return sign | static_cast<uint8_t>(top);  // saturate
  const double below = MiniFloatToFloat(f, static_cast<uint8_t>(lo));
  const double above = MiniFloatToFloat(f, static_cast<uint8_t>(lo + 1));
  const double d_lo = a - below, d_hi = above - a;
  int code = lo;
  if (d_hi < d_lo || (d_hi == d_lo && (lo & 1) != 0)) code = lo + 1;
  return sign | static_cast<uint8_t>(code);
}

}  // namespace qrag::quant
