#include "server/quant/lns_dot.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace qrag::quant {
namespace {

absl::Status Check(const LogFormat& f, size_t na, size_t nb) {
  if (na != nb) return absl::InvalidArgumentError(absl::StrCat("LNS dot of vectors of lengths ", na, " and ", nb));
  if (f.int_bits > 4 || f.frac_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("LNS dot supports Log m.f with m <= 4 and f <= 8, got Log ",
                                                   f.int_bits, ".", f.frac_bits));
  }
  if (na > (size_t{1} << 24)) return absl::InvalidArgumentError("LNS dot longer than 2^24 elements");
  return absl::OkStatus();
}

// Term i as (sign, E) with E in units of 2^-f; false when it is zero. nan is set for a NaN operand.
bool Term(const LogFormat& f, uint32_t a, uint32_t b, bool* negative, int* e, bool* nan) {
  const uint32_t ua = a & f.max_u(), ub = b & f.max_u();
  const bool na = (a & f.sign_mask()) != 0, nb = (b & f.sign_mask()) != 0;
  if ((ua == 0 && na) || (ub == 0 && nb)) {
    *nan = true;
    return false;
  }
  if (ua == 0 || ub == 0) return false;
  const int bias = f.bias() << f.frac_bits;
  *e = (static_cast<int>(ua) - bias) + (static_cast<int>(ub) - bias);
  *negative = na != nb;
  return true;
}

int FloorDiv(int a, int d) { return a >= 0 ? a / d : -((-a + d - 1) / d); }

}  // namespace

absl::StatusOr<LnsDotResult> LnsDotFactored(const LogFormat& f, absl::Span<const uint32_t> a,
                                            absl::Span<const uint32_t> b) {
  if (absl::Status s = Check(f, a.size(), b.size()); !s.ok()) return s;
  const int scale = 1 << f.frac_bits;
  LnsDotResult r;
  r.partial_sums.assign(scale, 0);
  // Smallest possible Q: both logs at their minimum (u = 1).
  const int e_min = 2 * (1 - (f.bias() << f.frac_bits));
  r.q_min = FloorDiv(e_min, scale);
  bool nan = false;
  for (size_t i = 0; i < a.size(); ++i) {
    bool negative;
    int e;
    if (!Term(f, a[i], b[i], &negative, &e, &nan)) continue;
    const int q = FloorDiv(e, scale), rem = e - q * scale;
    const int64_t v = int64_t{1} << (q - r.q_min);  // <= 2^(2 * 2^m) <= 2^32 for m <= 4 (Check), so 2^24 terms fit int64
    r.partial_sums[rem] += negative ? -v : v;
  }
  if (nan) {
    r.value = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  double sum = 0;
  for (int rem = 0; rem < scale; ++rem) {
    if (r.partial_sums[rem] == 0) continue;
    const double c = std::exp2(static_cast<double>(rem) / scale);
    sum += std::ldexp(static_cast<double>(r.partial_sums[rem]), r.q_min) * c;
  }
  r.value = sum;
  return r;
}

absl::StatusOr<long double> LnsDotDirect(const LogFormat& f, absl::Span<const uint32_t> a,
                                         absl::Span<const uint32_t> b) {
  if (absl::Status s = Check(f, a.size(), b.size()); !s.ok()) return s;
  const int scale = 1 << f.frac_bits;
  long double sum = 0;
  bool nan = false;
  for (size_t i = 0; i < a.size(); ++i) {
    bool negative;
    int e;
    if (!Term(f, a[i], b[i], &negative, &e, &nan)) continue;
    const int q = FloorDiv(e, scale), rem = e - q * scale;
    // 2^(E / 2^f) = 2^q * 2^(rem / 2^f), with the same constant as the factored form.
    const long double t = std::ldexp(static_cast<long double>(std::exp2(static_cast<double>(rem) / scale)), q);
    sum += negative ? -t : t;
  }
  if (nan) return std::numeric_limits<long double>::quiet_NaN();
  return sum;
}

}  // namespace qrag::quant
