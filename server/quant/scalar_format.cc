#include "server/quant/scalar_format.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/quant/fp8.h"
#include "server/quant/int_format.h"

namespace qrag::quant {

int ScalarFormat::TotalBits() const {
  switch (kind) {
    case Kind::kInt: return bits;
    case Kind::kE4M3:
    case Kind::kE5M2: return 8;
    case Kind::kMiniFloat: return minifloat.bits();
    case Kind::kLog: return log.bits();
  }
  return bits;
}

double ScalarFormat::Max() const {
  switch (kind) {
    case Kind::kInt: return IntMax(bits);
    case Kind::kE4M3: return kE4M3Max;
    case Kind::kE5M2: return kE5M2Max;
    case Kind::kMiniFloat: return MiniFloatMax(minifloat);
    case Kind::kLog: return LogMax(log);
  }
  return 1;
}

double ScalarFormat::Round(double v) const {
  switch (kind) {
    case Kind::kInt: return RoundToInt(v, bits);
    case Kind::kE4M3: return E4M3ToFloat(FloatToE4M3(static_cast<float>(v)));
    case Kind::kE5M2: return E5M2ToFloat(FloatToE5M2(static_cast<float>(v)));
    case Kind::kMiniFloat: return MiniFloatToFloat(minifloat, FloatToMiniFloat(minifloat, static_cast<float>(v)));
    case Kind::kLog: return LogToFloat(log, FloatToLog(log, static_cast<float>(v)));
  }
  return v;
}

std::string ScalarFormat::Name() const {
  switch (kind) {
    case Kind::kInt: return absl::StrCat("int", bits);
    case Kind::kE4M3: return "e4m3";
    case Kind::kE5M2: return "e5m2";
    case Kind::kMiniFloat: return absl::StrCat("e", minifloat.exp_bits, "m", minifloat.man_bits);
    case Kind::kLog: return absl::StrCat("log", log.int_bits, ".", log.frac_bits);
  }
  return "?";
}

absl::StatusOr<ScalarFormat> ParseScalarFormat(std::string_view name) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("unknown number format '", std::string(name),
                                                   "': use intB (B = 2..16), e4m3, e5m2, e2m3, e3m2, e2m1 (fp4) "
                                                   "or logM.F (e.g. log4.3)"));
  };
  if (name == "e4m3") return ScalarFormat::E4M3();
  if (name == "e5m2") return ScalarFormat::E5M2();
  if (name == "e2m3") return ScalarFormat::Mini(kE2M3);
  if (name == "e3m2") return ScalarFormat::Mini(kE3M2);
  if (name == "e2m1" || name == "fp4") return ScalarFormat::Mini(kE2M1);
  if (name.substr(0, 3) == "int") {
    int b;
    if (!absl::SimpleAtoi(std::string(name.substr(3)), &b) || b < 2 || b > 16) return bad();
    return ScalarFormat::Int(b);
  }
  if (name.substr(0, 3) == "log") {
    const std::string_view rest = name.substr(3);
    const size_t dot = rest.find('.');
    int m, f;
    if (dot == std::string_view::npos || !absl::SimpleAtoi(std::string(rest.substr(0, dot)), &m) ||
        !absl::SimpleAtoi(std::string(rest.substr(dot + 1)), &f) || m < 1 || m > 7 || f < 0 || f > 7 || m + f > 15) {
      return bad();
    }
    return ScalarFormat::Log(LogFormat{m, f});
  }
  return bad();
}

}  // namespace qrag::quant
