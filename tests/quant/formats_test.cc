// INT, OCP MX narrow floats (FP6/FP4), Log m.f, E8M0/MX blocks and NVFP4: encode/decode round trips and
// the spec edge cases, exhaustive over the code space where it is small. Oracles are written from the
// format definitions (values from bit fields with ldexp; encodings by searching all codes for the nearest
// value), independently of the implementation's arithmetic.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "server/quant/fp8.h"
#include "server/quant/int_format.h"
#include "server/quant/log_format.h"
#include "server/quant/minifloat.h"
#include "server/quant/mx.h"
#include "server/quant/nvfp4.h"
#include "server/quant/scalar_format.h"

namespace qrag::quant {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- INT ----

TEST(IntFormat, Int8_RoundHalfEvenAndSymmetricSaturation) {
  EXPECT_EQ(RoundToInt(0.5, 8), 0);
  EXPECT_EQ(RoundToInt(1.5, 8), 2);
  EXPECT_EQ(RoundToInt(2.5, 8), 2);
  EXPECT_EQ(RoundToInt(-2.5, 8), -2);
  EXPECT_EQ(RoundToInt(-3.5, 8), -4);
  EXPECT_EQ(RoundToInt(126.6, 8), 127);
  EXPECT_EQ(RoundToInt(1e9, 8), 127);
  EXPECT_EQ(RoundToInt(-1e9, 8), -127);  // -128 is never produced
  EXPECT_EQ(RoundToInt(kInf, 8), 127);
  EXPECT_EQ(RoundToInt(-kInf, 8), -127);
  EXPECT_EQ(RoundToInt(kNaN, 8), 0);
}

TEST(IntFormat, Int4_EveryHalfStepFromMinus9To9) {
  for (int i = -18; i <= 18; ++i) {
    const double v = i / 2.0;
    double expect = std::nearbyint(v);  // default rounding mode: to nearest even
    expect = std::fmax(-7, std::fmin(7, expect));
    EXPECT_EQ(RoundToInt(v, 4), expect) << v;
  }
}

TEST(IntFormat, Int4_PackUnpackAllCodePairs_OddLength) {
  std::vector<int8_t> codes;
  for (int a = -8; a <= 7; ++a) {
    for (int b = -8; b <= 7; ++b) {
      codes.push_back(static_cast<int8_t>(a));
      codes.push_back(static_cast<int8_t>(b));
    }
  }
  codes.push_back(-7);  // odd length: the last high nibble is padding
  std::vector<uint8_t> packed((codes.size() + 1) / 2);
  PackInt4(codes.data(), static_cast<int64_t>(codes.size()), packed.data());
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(UnpackInt4(packed.data(), static_cast<int64_t>(i)), codes[i]);
  EXPECT_EQ(packed.back() >> 4, 0);
  EXPECT_EQ(packed[0], 0x88);  // -8, -8
}

// ---- MX FP6 / FP4 ----

double MiniValue(const MiniFloatFormat& f, int code) {
  const int bias = (1 << (f.exp_bits - 1)) - 1;
  const int e = (code >> f.man_bits) & ((1 << f.exp_bits) - 1);
  const int m = code & ((1 << f.man_bits) - 1);
  const double s = (code >> (f.exp_bits + f.man_bits)) & 1 ? -1 : 1;
  if (e == 0) return s * std::ldexp(m, 1 - bias - f.man_bits);
  return s * std::ldexp((1 << f.man_bits) + m, e - bias - f.man_bits);
}

// The nearest code by search, ties to the even code, saturating.
int NearestMini(const MiniFloatFormat& f, double x) {
  const int mag_codes = 1 << (f.exp_bits + f.man_bits);
  const double a = std::fabs(x);
  int best = 0;
  for (int c = 1; c < mag_codes; ++c) {
    const double d = std::fabs(MiniValue(f, c) - a), bd = std::fabs(MiniValue(f, best) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) best = c;
  }
  return (std::signbit(x) ? mag_codes : 0) | best;
}

class MiniFloatExhaustive : public ::testing::TestWithParam<MiniFloatFormat> {};

TEST_P(MiniFloatExhaustive, EveryCodeDecodesAndRoundTrips) {
  const MiniFloatFormat f = GetParam();
  for (int c = 0; c < f.num_codes(); ++c) {
    const float v = MiniFloatToFloat(f, static_cast<uint8_t>(c));
    EXPECT_EQ(v, MiniValue(f, c)) << c;
    EXPECT_EQ(FloatToMiniFloat(f, v), c) << c;  // -0 keeps its sign code
  }
}

TEST_P(MiniFloatExhaustive, EncodeMatchesNearestSearchOnMidpointsAndNeighbours) {
  const MiniFloatFormat f = GetParam();
  const int mag_codes = 1 << (f.exp_bits + f.man_bits);
  for (int c = 0; c + 1 < mag_codes; ++c) {
    const double lo = MiniValue(f, c), hi = MiniValue(f, c + 1), mid = (lo + hi) / 2;
    for (double x : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9), -mid, lo + (hi - lo) / 4}) {
      EXPECT_EQ(FloatToMiniFloat(f, static_cast<float>(x)), NearestMini(f, static_cast<float>(x))) << x;
    }
  }
}

TEST_P(MiniFloatExhaustive, SaturatesInfAndLargeNaNIsZero) {
  const MiniFloatFormat f = GetParam();
  const uint8_t max_code = static_cast<uint8_t>(f.sign_mask() - 1);
  EXPECT_EQ(FloatToMiniFloat(f, 1e30f), max_code);
  EXPECT_EQ(FloatToMiniFloat(f, kInf), max_code);
  EXPECT_EQ(FloatToMiniFloat(f, -kInf), f.sign_mask() | max_code);
  EXPECT_EQ(FloatToMiniFloat(f, kNaN), 0);
  // Below half the smallest subnormal: zero.
  EXPECT_EQ(FloatToMiniFloat(f, static_cast<float>(MiniValue(f, 1) / 2)), 0);  // tie -> even (0)
}

INSTANTIATE_TEST_SUITE_P(Formats, MiniFloatExhaustive, ::testing::Values(kE2M3, kE3M2, kE2M1),
                         [](const auto& info) {
                           return "E" + std::to_string(info.param.exp_bits) + "M" + std::to_string(info.param.man_bits);
                         });

TEST(MiniFloat, SpecMaxima) {
  EXPECT_EQ(MiniFloatMax(kE2M3), 7.5f);
  EXPECT_EQ(MiniFloatMax(kE3M2), 28.0f);
  EXPECT_EQ(MiniFloatMax(kE2M1), 6.0f);
  const float fp4[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 8; ++c) EXPECT_EQ(MiniFloatToFloat(kE2M1, static_cast<uint8_t>(c)), fp4[c]);
}

// ---- Log m.f ----

TEST(LogFormat, Log43_EveryCodeDecodesAsDefined) {
  const LogFormat f = kLog43;
  EXPECT_EQ(f.bits(), 8);
  EXPECT_EQ(LogToFloat(f, 0), 0.0f);
  EXPECT_TRUE(std::isnan(LogToFloat(f, 0x80)));
  for (uint32_t u = 1; u < 128; ++u) {
    const double expect = std::exp2(u / 8.0 - 7);
    EXPECT_NEAR(LogToFloat(f, u), expect, expect * 1e-7) << u;
    EXPECT_EQ(LogToFloat(f, 0x80 | u), -LogToFloat(f, u));
  }
  EXPECT_EQ(LogToFloat(f, 56), 1.0f);  // u / 8 - 7 = 0
  EXPECT_EQ(LogToFloat(f, 64), 2.0f);
  EXPECT_NEAR(LogMax(f), std::exp2(8.875), 1e-4);
  EXPECT_NEAR(LogMinPositive(f), std::exp2(-6.875), 1e-9);
}

TEST(LogFormat, Log43_AllCodesRoundTrip) {
  for (uint32_t c = 0; c < 256; ++c) {
    if (c == 0x80) continue;  // NaN
    EXPECT_EQ(FloatToLog(kLog43, LogToFloat(kLog43, c)), c) << c;
  }
}

TEST(LogFormat, Log43_EncodeIsNearestInLinearDomainTiesToEven) {
  const LogFormat f = kLog43;
  for (uint32_t u = 0; u < 127; ++u) {
    const double lo = u == 0 ? 0.0 : LogToFloat(f, u), hi = LogToFloat(f, u + 1);
    const float mid = static_cast<float>((lo + hi) / 2);
    // The fp32 midpoint is not exactly the real midpoint: decide by exact comparison, as the encoder must.
    const double dl = mid - lo, dh = hi - mid;
    const uint32_t expect = dl < dh ? u : dh < dl ? u + 1 : (u % 2 == 0 ? u : u + 1);
    EXPECT_EQ(FloatToLog(f, mid), expect) << u;
    EXPECT_EQ(FloatToLog(f, std::nextafter(mid, 0.0f)), u) << u;
    EXPECT_EQ(FloatToLog(f, std::nextafter(mid, 1e9f)), u + 1) << u;
  }
}

TEST(LogFormat, Log43_SaturationUnderflowZeroAndNaN) {
  const LogFormat f = kLog43;
  EXPECT_EQ(FloatToLog(f, 1e6f), 127u);
  EXPECT_EQ(FloatToLog(f, kInf), 127u);
  EXPECT_EQ(FloatToLog(f, -kInf), 0x80u | 127u);
  EXPECT_EQ(FloatToLog(f, 0.0f), 0u);
  EXPECT_EQ(FloatToLog(f, -0.0f), 0u);  // no -0: that code is NaN
  EXPECT_EQ(FloatToLog(f, LogMinPositive(f) * 0.49f), 0u);
  EXPECT_EQ(FloatToLog(f, -LogMinPositive(f) * 0.49f), 0u);
  EXPECT_EQ(FloatToLog(f, LogMinPositive(f) * 0.51f), 1u);
  EXPECT_EQ(FloatToLog(f, kNaN), 0x80u);
}

TEST(LogFormat, Log43_WorstCaseRelativeErrorIsTheRatioBound) {
  // Nearest rounding with ratio r = 2^(1/8) between neighbours: |err| / |x| <= (r - 1) / (r + 1).
  const double r = std::exp2(1.0 / 8), bound = (r - 1) / (r + 1);
  double worst = 0;
  for (int i = 0; i < 100000; ++i) {
    const float x = static_cast<float>(std::exp2(-6.5 + 15.0 * i / 100000));
    worst = std::fmax(worst, std::fabs(LogToFloat(kLog43, FloatToLog(kLog43, x)) - x) / x);
  }
  EXPECT_LE(worst, bound * (1 + 1e-6));
  EXPECT_GT(worst, bound * 0.99);
}

TEST(LogFormat, OtherWidths_Log40AndLog25RoundTrip) {
  for (LogFormat f : {LogFormat{4, 0}, LogFormat{2, 5}, LogFormat{3, 4}}) {
    for (uint32_t c = 0; c < (2u << (f.int_bits + f.frac_bits)); ++c) {
      if (c == f.nan_code()) continue;
      EXPECT_EQ(FloatToLog(f, LogToFloat(f, c)), c) << f.int_bits << "." << f.frac_bits << " code " << c;
    }
  }
  EXPECT_EQ(LogToFloat(LogFormat{4, 0}, 7), 1.0f);  // bias 7
}

// ---- E8M0 and MX blocks ----

TEST(E8M0, AllCodes) {
  for (int e = 0; e < 255; ++e) EXPECT_EQ(E8M0ToFloat(static_cast<uint8_t>(e)), std::ldexp(1.0f, e - 127)) << e;
  EXPECT_TRUE(std::isnan(E8M0ToFloat(0xFF)));
  EXPECT_EQ(E8M0ToFloat(0), std::ldexp(1.0f, -127));  // no zero: the smallest scale is 2^-127
  EXPECT_EQ(E8M0FromExponent(0), 127);
  EXPECT_EQ(E8M0FromExponent(-200), 0);
  EXPECT_EQ(E8M0FromExponent(200), 254);  // never the NaN code
}

struct MxCase {
  MxElement element;
  int emax;
  float max;
};

class MxBlock : public ::testing::TestWithParam<MxCase> {};

TEST_P(MxBlock, SharedScaleIsFloorLog2AmaxMinusEmax) {
  const MxCase c = GetParam();
  EXPECT_EQ(MxElementEmax(c.element), c.emax);
  EXPECT_EQ(MxElementMax(c.element), c.max);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x(32);
    const float mag = std::ldexp(1.0f, trial - 25);
    for (float& v : x) v = u(rng) * mag;
    float amax = 0;
    for (float v : x) amax = std::fmax(amax, std::fabs(v));
    uint8_t scale;
    std::vector<uint8_t> codes(32);
    MxQuantize(c.element, x.data(), 32, &scale, codes.data());
    EXPECT_EQ(static_cast<int>(scale) - 127, std::ilogb(amax) - c.emax) << trial;
    std::vector<float> y(32);
    MxDequantize(c.element, &scale, codes.data(), 32, y.data());
    const float step = std::ldexp(1.0f, static_cast<int>(scale) - 127);
    for (int i = 0; i < 32; ++i) {
      // Each element is the element format's rounding of x / X (clamped), times X.
      const float expect = MxDecodeElement(c.element, MxEncodeElement(c.element, x[i] / step)) * step;
      EXPECT_EQ(y[i], expect) << i;
      EXPECT_LE(std::fabs(y[i]), c.max * step);
    }
  }
}

TEST_P(MxBlock, AmaxElementClampsToElementMax) {
  // amax = 1.99 * 2^k: shared_exp = k - emax, and amax / X = 1.99 * 2^emax can exceed the element max
  // (E2M1: 7.96 > 6); the spec clamps it to the max.
  const MxCase c = GetParam();
  std::vector<float> x(32, 0.0f);
  x[3] = 1.99f;
  uint8_t scale;
  std::vector<uint8_t> codes(32);
  MxQuantize(c.element, x.data(), 32, &scale, codes.data());
  EXPECT_EQ(static_cast<int>(scale) - 127, -c.emax);
  std::vector<float> y(32);
  MxDequantize(c.element, &scale, codes.data(), 32, y.data());
  EXPECT_LE(y[3], 1.99f);
  EXPECT_EQ(y[3], std::fmin(c.max, MxDecodeElement(c.element, MxEncodeElement(c.element, std::ldexp(1.99f, c.emax)))) *
                      std::ldexp(1.0f, -c.emax));
}

TEST_P(MxBlock, NaNOrInfGivesNaNScaleZerosGiveSmallestScale_PartialBlock) {
  const MxCase c = GetParam();
  std::vector<float> x(40, 0.5f);
  x[35] = kNaN;  // second block (8 elements) only
  std::vector<uint8_t> scales(2), codes(40);
  MxQuantize(c.element, x.data(), 40, scales.data(), codes.data());
  EXPECT_NE(scales[0], kE8M0Nan);
  EXPECT_EQ(scales[1], kE8M0Nan);
  std::vector<float> y(40);
  MxDequantize(c.element, scales.data(), codes.data(), 40, y.data());
  EXPECT_EQ(y[0], 0.5f);
  for (int i = 32; i < 40; ++i) EXPECT_TRUE(std::isnan(y[i]));
  x.assign(32, 0.0f);
  x[0] = -kInf;
  MxQuantize(c.element, x.data(), 32, scales.data(), codes.data());
  EXPECT_EQ(scales[0], kE8M0Nan);
  x.assign(32, 0.0f);
  MxQuantize(c.element, x.data(), 32, scales.data(), codes.data());
  EXPECT_EQ(scales[0], 0);
  MxDequantize(c.element, scales.data(), codes.data(), 32, y.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Elements, MxBlock,
                         ::testing::Values(MxCase{MxElement::kE4M3, 8, 448.0f}, MxCase{MxElement::kE5M2, 15, 57344.0f},
                                           MxCase{MxElement::kE2M3, 2, 7.5f}, MxCase{MxElement::kE3M2, 4, 28.0f},
                                           MxCase{MxElement::kE2M1, 2, 6.0f},
                                           MxCase{MxElement::kInt8, 0, 127.0f / 64}),
                         [](const auto& info) {
                           std::string n = MxElementName(info.param.element);
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

TEST(MxInt8, AllCodesDecodeAsFixedPoint1_6) {
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(MxDecodeElement(MxElement::kInt8, static_cast<uint8_t>(c)), static_cast<int8_t>(c) / 64.0f);
  }
  EXPECT_EQ(MxEncodeElement(MxElement::kInt8, -5.0f), static_cast<uint8_t>(static_cast<int8_t>(-127)));
  EXPECT_EQ(MxEncodeElement(MxElement::kInt8, 1.0f / 128), 0);  // tie 0.5 -> even (0)
  EXPECT_EQ(MxEncodeElement(MxElement::kInt8, 3.0f / 128), 2);  // tie 1.5 -> 2
}

// ---- NVFP4 ----

TEST(Nvfp4, TwoLevelScalesAndE2M1Elements_PartialBlock) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 1);
  const int n = 16 * 5 + 7;
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  x[20] = 12.0f;  // the tensor amax
  std::vector<uint8_t> scales((n + 15) / 16), codes(n);
  const float ts = Nvfp4Quantize(x.data(), n, scales.data(), codes.data());
  EXPECT_EQ(ts, 12.0f / (6.0f * 448.0f));
  EXPECT_EQ(E4M3ToFloat(scales[1]), 448.0f);  // the block holding the amax gets the largest block scale
  std::vector<float> y(n);
  Nvfp4Dequantize(ts, scales.data(), codes.data(), n, y.data());
  EXPECT_EQ(y[20], 12.0f);
  for (int i = 0; i < n; ++i) {
    const float s = E4M3ToFloat(scales[i / 16]) * ts;
    EXPECT_EQ(y[i], MiniFloatToFloat(kE2M1, codes[i]) * s);
    EXPECT_EQ(codes[i], FloatToMiniFloat(kE2M1, x[i] / s)) << i;
  }
}

TEST(Nvfp4, AllZeroTensorAndZeroBlock) {
  std::vector<float> x(32, 0.0f);
  std::vector<uint8_t> scales(2), codes(32);
  EXPECT_EQ(Nvfp4Quantize(x.data(), 32, scales.data(), codes.data()), 1.0f);
  x[31] = 1.0f;
  Nvfp4Quantize(x.data(), 32, scales.data(), codes.data());
  EXPECT_EQ(scales[0], 0);
  std::vector<float> y(32);
  Nvfp4Dequantize(1.0f / 2688, scales.data(), codes.data(), 32, y.data());
  EXPECT_EQ(y[0], 0.0f);
}

// ---- ScalarFormat ----

TEST(ScalarFormat, ParseNamesAndErrors) {
  for (const char* name : {"int2", "int4", "int8", "int16", "e4m3", "e5m2", "e2m3", "e3m2", "e2m1", "log4.3", "log2.5"}) {
    auto f = ParseScalarFormat(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_EQ(f->Name(), name);
  }
  EXPECT_EQ(ParseScalarFormat("fp4")->Name(), "e2m1");
  for (const char* bad : {"int1", "int17", "intx", "log9.0", "log4", "log4.x", "fp16", ""}) {
    EXPECT_EQ(ParseScalarFormat(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ScalarFormat::Int(4).Max(), 7);
  EXPECT_EQ(ScalarFormat::E4M3().Round(1000), 448);
  EXPECT_EQ(ScalarFormat::Log(kLog43).Round(1.0), 1.0);
}

}  // namespace
}  // namespace qrag::quant
