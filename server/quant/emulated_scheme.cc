#include "server/quant/emulated_scheme.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/quant/group_quant.h"
#include "server/quant/log_format.h"
#include "server/quant/pruning.h"
#include "server/quant/scalar_format.h"

namespace qrag::quant {

absl::StatusOr<WeightTransform> EmulatedWeightScheme(std::string_view name) {
  if (name == "log4.3") {
    return WeightTransform([](std::vector<float>* w, int64_t rows, int64_t cols) -> absl::Status {
      GroupQuantOptions o;
      o.format = ScalarFormat::Log(kLog43);
      o.granularity = Granularity::kChannel;
      o.clip.method = ClipMethod::kMax;
      QRAG_ASSIGN_OR_RETURN(GroupQuantResult r, GroupQuantize(w->data(), rows, cols, o));
      *w = std::move(r.dequantized);
      return absl::OkStatus();
    });
  }
  if (name == "2:4") {
    return WeightTransform([](std::vector<float>* w, int64_t rows, int64_t cols) -> absl::Status {
      Prune2Of4(w->data(), rows, cols);
      return absl::OkStatus();
    });
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown emulated weight scheme '", std::string(name), "': use one of ", std::string(kEmulatedSchemeNames)));
}

}  // namespace qrag::quant
