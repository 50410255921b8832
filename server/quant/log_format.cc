#include "server/quant/log_format.h"

#include <cmath>

namespace qrag::quant {

LogExponentSplit SplitLogExponent(const LogFormat& f, int e) {
  const int scale = 1 << f.frac_bits;
  const int q = e >= 0 ? e / scale : -((-e + scale - 1) / scale);
  return LogExponentSplit{q, e - q * scale};
}

double LogFractionPower(const LogFormat& f, int r) {
  return std::exp2(static_cast<double>(r) / (1 << f.frac_bits));
}

double LogMagnitude(const LogFormat& f, uint32_t u) {
  // u / 2^f - bias (u - bias * 2^f may be negative).
  const LogExponentSplit s = SplitLogExponent(f, static_cast<int>(u) - (f.bias() << f.frac_bits));
  return std::ldexp(LogFractionPower(f, s.r), s.q);
}

float LogToFloat(const LogFormat& f, uint32_t code) {
  const uint32_t u = code & f.max_u();
  const bool negative = (code & f.sign_mask()) != 0;
  if (u == 0) return negative ? std::nanf("") : 0.0f;
  const float mag = static_cast<float>(LogMagnitude(f, u));
  return negative ? -mag : mag;
}

float LogMax(const LogFormat& f) { return LogToFloat(f, f.max_u()); }
float LogMinPositive(const LogFormat& f) { return LogToFloat(f, 1); }

uint32_t FloatToLog(const LogFormat& f, float x) {
  if (std::isnan(x)) return f.nan_code();
  const uint32_t sign = std::signbit(x) ? f.sign_mask() : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a == 0) return 0;
  const uint32_t top = f.max_u();
  auto value = [&](uint32_t u) { return u == 0 ? 0.0 : static_cast<double>(LogToFloat(f, u)); };
  if (a >= value(top)) return sign | top;
  // Estimate from log2, then settle on the exact bracket value(lo) <= a < value(lo + 1): log2 in double is
  // off by far less than one code, so at most a step or two of correction is needed.
  double est = std::floor((std::log2(a) + f.bias()) * (1 << f.frac_bits));
  int64_t lo = static_cast<int64_t>(std::fmax(0.0, std::fmin(est, static_cast<double>(top))));
  while (lo > 0 && value(static_cast<uint32_t>(lo)) > a) --lo;
  while (lo < static_cast<int64_t>(top) && value(static_cast<uint32_t>(lo + 1)) <= a) ++lo;
  const double d_lo = a - value(static_cast<uint32_t>(lo));
  const double d_hi = value(static_cast<uint32_t>(lo + 1)) - a;
  uint32_t u = static_cast<uint32_t>(lo);
  if (d_hi < d_lo || (d_hi == d_lo && (lo & 1) != 0)) u = static_cast<uint32_t>(lo + 1);
  if (u == 0) return 0;  // underflow to +0 (there is no -0: its code is NaN)
  return sign | u;
}

}  // namespace qrag::quant
