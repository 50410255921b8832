// One interface over the element formats a scaled quantizer can round to, for the studies and the served
// schemes: symmetric INT<bits>, FP8 E4M3 / E5M2 (fp8.h), the MX narrow floats (minifloat.h) and Log m.f
// (log_format.h). A value is quantized as scale * Round(x / scale) where scale = clip / Max(), so the clip
// lands on the format's largest magnitude.
#ifndef QRAG_SERVER_QUANT_SCALAR_FORMAT_H_
#define QRAG_SERVER_QUANT_SCALAR_FORMAT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/quant/log_format.h"
#include "server/quant/minifloat.h"

namespace qrag::quant {

struct ScalarFormat {
  enum class Kind { kInt, kE4M3, kE5M2, kMiniFloat, kLog };
  Kind kind = Kind::kInt;
  int bits = 8;                // kInt: total bits (2..16)
  MiniFloatFormat minifloat;   // kMiniFloat
  LogFormat log;               // kLog

  static ScalarFormat Int(int bits) { return ScalarFormat{Kind::kInt, bits, {}, {}}; }
  static ScalarFormat E4M3() { return ScalarFormat{Kind::kE4M3, 8, {}, {}}; }
  static ScalarFormat E5M2() { return ScalarFormat{Kind::kE5M2, 8, {}, {}}; }
  static ScalarFormat Mini(MiniFloatFormat f) { return ScalarFormat{Kind::kMiniFloat, f.bits(), f, {}}; }
  static ScalarFormat Log(LogFormat f) { return ScalarFormat{Kind::kLog, f.bits(), {}, f}; }

  // Total bits per element.
  int TotalBits() const;
  // The largest finite magnitude (INT: IntMax(bits), in units of the step).
  double Max() const;
  // The representable value nearest to v (the format's own rounding, saturation and NaN rules).
  double Round(double v) const;
  // "int4", "int8", "e4m3", "e5m2", "e2m3", "e3m2", "e2m1", "log4.3".
  std::string Name() const;
  bool is_int() const { return kind == Kind::kInt; }
};

// Parses the names Name() produces: "int2".."int16", "e4m3", "e5m2", "e2m3", "e3m2", "e2m1" (alias "fp4"),
// "logM.F" (M 1..7, F 0..7, M + F <= 15). INVALID_ARGUMENT listing the accepted names otherwise.
absl::StatusOr<ScalarFormat> ParseScalarFormat(std::string_view name);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_SCALAR_FORMAT_H_
