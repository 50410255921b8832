#include "server/quant/int_format.h"

#include <cmath>

namespace qrag::quant {

double RoundHalfEvenDouble(double v) {
  const double r = std::floor(v + 0.5);
  // floor(v + 0.5) rounds ties up; a tie that landed on an odd integer goes back down to the even one.
  if (r - v == 0.5 && std::fmod(r, 2.0) != 0.0) return r - 1.0;
  return r;
}

int32_t RoundToInt(double v, int bits) {
  if (std::isnan(v)) return 0;
  const double qmax = IntMax(bits);
  if (v >= qmax) return static_cast<int32_t>(qmax);
  if (v <= -qmax) return -static_cast<int32_t>(qmax);
  return static_cast<int32_t>(RoundHalfEvenDouble(v));
}

void PackInt4(const int8_t* codes, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; i += 2) {
    const uint8_t lo = static_cast<uint8_t>(codes[i]) & 0xf;
    const uint8_t hi = i + 1 < n ? static_cast<uint8_t>(codes[i + 1]) & 0xf : 0;
    out[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

}  // namespace qrag::quant
