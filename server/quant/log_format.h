// Logarithmic number formats "Log m.f": a sign bit and an unsigned fixed-point base-2 logarithm of the
// magnitude with m integer and f fraction bits (Log 4.3: 4 + 3 = 7 magnitude bits, one byte in all). This is
// the 8-bit logarithmic format of Dally's "Hardware for deep learning" talks (HotChips 2023), made concrete
// here as follows:
//
//   code = sign << (m + f) | u,   u in [0, 2^(m+f))
//   u = 0, sign 0:  +0                         (the only zero)
//   u = 0, sign 1:  NaN                        (the "negative zero" code, like a posit's NaR)
//   u > 0:          (-1)^sign * 2^(u / 2^f - bias),  bias = 2^(m-1) - 1 (7 for Log 4.3)
//
// so that the exponent range mirrors a float with m exponent bits: Log 4.3 spans 2^-6.875 ... 2^8.875
// (~0.0082 ... 469.5), about the normal range of FP8 E4M3 (2^-6 ... 448), with 8 values per octave spaced
// by the ratio 2^(1/8) instead of E4M3's linear steps of 1/8 within an octave.
//
// Decoding is bit-exact by definition: the value is the fp32 rounding of
// ldexp(2^(r / 2^f) computed in double, q) where u/2^f - bias = q + r/2^f with 0 <= r < 2^f.
// Encoding rounds to the nearest representable value in the linear domain (the smaller |error|, compared
// exactly in double), ties to the even code; magnitudes above the max (and +-inf) saturate to +-max;
// magnitudes below the smallest non-zero value round to it or to +0 (ties to +0, the even code); -0 is +0.
// NaN encodes as the NaN code.
#ifndef QRAG_SERVER_QUANT_LOG_FORMAT_H_
#define QRAG_SERVER_QUANT_LOG_FORMAT_H_

#include <cstdint>
#include <vector>

namespace qrag::quant {

struct LogFormat {
  int int_bits = 4;
  int frac_bits = 3;

  int bits() const { return 1 + int_bits + frac_bits; }
  int bias() const { return (1 << (int_bits - 1)) - 1; }
  uint32_t max_u() const { return (1u << (int_bits + frac_bits)) - 1; }
  uint32_t sign_mask() const { return 1u << (int_bits + frac_bits); }
  uint32_t nan_code() const { return sign_mask(); }
};

inline constexpr LogFormat kLog43{4, 3};

// A log exponent e in units of 2^-f, split as e / 2^f = q + r / 2^f with 0 <= r < 2^f (floor division).
struct LogExponentSplit {
  int q = 0;
  int r = 0;
};
LogExponentSplit SplitLogExponent(const LogFormat& format, int e);
// 2^(r / 2^f) in double: the one constant per fractional remainder that decoding and the LNS dot share.
double LogFractionPower(const LogFormat& format, int r);

// The exact value of magnitude code u > 0 in double (before the fp32 rounding of LogToFloat).
double LogMagnitude(const LogFormat& format, uint32_t u);
float LogToFloat(const LogFormat& format, uint32_t code);
float LogMax(const LogFormat& format);
// The smallest non-zero magnitude (u = 1).
float LogMinPositive(const LogFormat& format);
uint32_t FloatToLog(const LogFormat& format, float x);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_LOG_FORMAT_H_
