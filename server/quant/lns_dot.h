// Dot products in a logarithmic number system (LNS), with the factored addition of Dally's "Hardware for
// deep learning" (HotChips 2023) / NVIDIA's LNS patents: multiplication is the addition of the log
// exponents; addition needs 2^x, which is factored so that only 2^f constant multiplications remain:
//
//   a_i * b_i = s_i * 2^(E_i / 2^f),  E_i = integer sum of the two fixed-point logs (units of 2^-f)
//   E_i = Q_i * 2^f + R_i,  0 <= R_i < 2^f
//   sum_i a_i b_i = sum_{R=0}^{2^f - 1} 2^(R / 2^f) * P_R,   P_R = sum_{i : R_i = R} s_i 2^Q_i
//
// The partial sums P_R are exact (integers after an offset of 2^Q_min, accumulated in int64); each is scaled
// once by the constant 2^(R/2^f) (the same double as log_format.h decodes with) and the 2^f products are
// added in double. The direct LNS sum evaluates sum_i s_i 2^(E_i / 2^f) term by term (in long double).
// Both compute the same exact quantity; they differ only by the final roundings (the factored one rounds
// 2 * 2^f times instead of once per term).
//
// Operands are Log m.f codes (log_format.h). A NaN operand makes the result NaN; zero operands contribute
// nothing.
#ifndef QRAG_SERVER_QUANT_LNS_DOT_H_
#define QRAG_SERVER_QUANT_LNS_DOT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/quant/log_format.h"

namespace qrag::quant {

struct LnsDotResult {
  double value = 0;
  std::vector<int64_t> partial_sums;  // P_R * 2^-Q_min, R = 0 .. 2^f - 1 (exact integers)
  int q_min = 0;                      // the offset: P_R = partial_sums[R] * 2^q_min
};

// The factored LNS dot product. INVALID_ARGUMENT when the lengths differ, or when the format's exponent
// range (int_bits > 4) or the length (> 2^24) could overflow the exact int64 partial sums.
absl::StatusOr<LnsDotResult> LnsDotFactored(const LogFormat& format, absl::Span<const uint32_t> a,
                                            absl::Span<const uint32_t> b);
// The direct LNS sum, term by term in long double. Same preconditions (lengths must match).
absl::StatusOr<long double> LnsDotDirect(const LogFormat& format, absl::Span<const uint32_t> a,
                                         absl::Span<const uint32_t> b);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_LNS_DOT_H_
