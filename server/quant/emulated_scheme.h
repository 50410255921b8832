// Weight schemes the backends do not serve natively, emulated by transforming the fp32 weights before an
// fp32 model uses them: the number-representation study (issue "Quantization toolkit") measures what these
// formats would cost in end-model accuracy without kernels for them.
//  - "log4.3": Log 4.3 weights (sign + 4.3 fixed-point log2 magnitude), one scale per output channel that
//    maps the channel's max |w| to the format's max (469.5), rounded to the nearest code, decoded to fp32;
//  - "2:4": 2:4 magnitude pruning along the reduction dimension (the two largest |w| of every four kept),
//    no fine-tuning.
// The same transforms feed qrag-quant report (weight SQNR) and bench/rag_bench (SciFact nDCG@10).
#ifndef QRAG_SERVER_QUANT_EMULATED_SCHEME_H_
#define QRAG_SERVER_QUANT_EMULATED_SCHEME_H_

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qrag::quant {

// Rewrites a row-major [rows, cols] weight (torch.nn.Linear: rows = outputs, cols = the reduction) in place.
using WeightTransform = std::function<absl::Status(std::vector<float>* w, int64_t rows, int64_t cols)>;

// The names EmulatedWeightScheme accepts, for usage messages.
inline constexpr std::string_view kEmulatedSchemeNames = "log4.3, 2:4";

// INVALID_ARGUMENT naming the accepted names for an unknown scheme.
absl::StatusOr<WeightTransform> EmulatedWeightScheme(std::string_view name);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_EMULATED_SCHEME_H_
