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

// Calls fn(negative, split) for every non-zero product a[i] * b[i], whose log exponent E (units of 2^-f) is
// the sum of the operands' logs, split as E / 2^f = q + r / 2^f. Returns false when an operand is NaN.
template <typename Fn>
bool ForEachProduct(const LogFormat& f, absl::Span<const uint32_t> a, absl::Span<const uint32_t> b, Fn fn) {
  const int bias = f.bias() << f.frac_bits;
  bool finite = true;
  for (size_t i = 0; i < a.size(); ++i) {
    const uint32_t ua = a[i] & f.max_u(), ub = b[i] & f.max_u();
    const bool na = (a[i] & f.sign_mask()) != 0, nb = (b[i] & f.sign_mask()) != 0;
    if ((ua == 0 && na) || (ub == 0 && nb)) finite = false;
    if (ua == 0 || ub == 0) continue;
    fn(na != nb, SplitLogExponent(f, (static_cast<int>(ua) - bias) + (static_cast<int>(ub) - bias)));
  }
  return finite;
}

}  // namespace

absl::StatusOr<LnsDotResult> LnsDotFactored(const LogFormat& f, absl::Span<const uint32_t> a,
                                            absl::Span<const uint32_t> b) {
  if (absl::Status s = Check(f, a.size(), b.size()); !s.ok()) return s;
  const int scale = 1 << f.frac_bits;
  LnsDotResult r;
  r.partial_sums.assign(scale, 0);
  // Smallest possible Q: both logs at their minimum (u = 1).
  r.q_min = SplitLogExponent(f, 2 * (1 - (f.bias() << f.frac_bits))).q;
  const bool finite = ForEachProduct(f, a, b, [&](bool negative, LogExponentSplit e) {
    // <= 2^(2 * 2^m) <= 2^32 for m <= 4 (Check), so 2^24 terms fit int64.
    const int64_t v = int64_t{1} << (e.q - r.q_min);
    r.partial_sums[e.r] += negative ? -v : v;
  });
  if (!finite) {
    r.value = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  double sum = 0;
  for (int rem = 0; rem < scale; ++rem) {
    if (r.partial_sums[rem] == 0) continue;
    sum += std::ldexp(static_cast<double>(r.partial_sums[rem]), r.q_min) * LogFractionPower(f, rem);
  }
  r.value = sum;
  return r;
}

absl::StatusOr<long double> LnsDotDirect(const LogFormat& f, absl::Span<const uint32_t> a,
                                         absl::Span<const uint32_t> b) {
  if (absl::Status s = Check(f, a.size(), b.size()); !s.ok()) return s;
  long double sum = 0;
  const bool finite = ForEachProduct(f, a, b, [&](bool negative, LogExponentSplit e) {
    // 2^(E / 2^f) = 2^q * 2^(r / 2^f), with the same constant as the factored form.
    const long double t = std::ldexp(static_cast<long double>(LogFractionPower(f, e.r)), e.q);
    sum += negative ? -t : t;
  });
  if (!finite) return std::numeric_limits<long double>::quiet_NaN();
  return sum;
}

}  // namespace qrag::quant
