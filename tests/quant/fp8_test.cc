// OCP OFP8 v1.0 E4M3 / E5M2 conversions and the bf16 / IEEE half conversions, checked against oracles
// written independently of the implementation: code values computed from the bit fields with ldexp, and
// encodings found by searching the codes for the nearest value (ties to the code with an even last bit).
#include "server/quant/fp8.h"

#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "server/common/cpu_features.h"
#include "server/quant/bf16.h"

namespace qrag::quant {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

float FromBits(uint32_t u) { return std::bit_cast<float>(u); }
uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }

// The value of an OFP8 code from its fields (OCP OFP8 v1.0: bias 2^(E-1) - 1, subnormals at exponent 0,
// E4M3 has only the NaN S.1111.111 and no infinities, E5M2 follows IEEE 754 for exponent all ones).
double Fp8Value(uint8_t code, int exp_bits, int man_bits) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  const int e = (code >> man_bits) & ((1 << exp_bits) - 1);
  const int m = code & ((1 << man_bits) - 1);
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  const int e_max = (1 << exp_bits) - 1;
  if (exp_bits == 4 && e == e_max && m == (1 << man_bits) - 1) return std::copysign(std::nan(""), sign);
  if (exp_bits == 5 && e == e_max) return m == 0 ? sign * HUGE_VAL : std::copysign(std::nan(""), sign);
  if (e == 0) return sign * std::ldexp(m, 1 - bias - man_bits);
  return sign * std::ldexp((1 << man_bits) + m, e - bias - man_bits);
}
double E4M3Value(uint8_t c) { return Fp8Value(c, 4, 3); }
double E5M2Value(uint8_t c) { return Fp8Value(c, 5, 2); }

// Brute force: the finite code of x's sign nearest to x, ties to the code with an even least significant
// bit. Saturation falls out: beyond the largest finite value, the nearest finite code is the largest.
uint8_t NearestFp8(float x, double (*value)(uint8_t)) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(x));
  int best = -1;
  double best_d = HUGE_VAL;
  for (int c = 0; c < 128; ++c) {
    const double v = value(static_cast<uint8_t>(c));
    if (!std::isfinite(v)) continue;
    const double d = std::fabs(a - v);
    if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
  }
  return static_cast<uint8_t>(sign | best);
}

// A sweep of fp32 values of both signs: every 1021st bit pattern up to a magnitude of 2^20 (far beyond both
// formats' ranges), plus each code's value and its three fp32 neighbours on either side.
std::vector<float> Sweep(double (*value)(uint8_t)) {
  std::vector<float> xs;
  for (uint32_t u = 0; u <= Bits(1048576.0f); u += 1021) xs.push_back(FromBits(u));
  for (int c = 0; c < 128; ++c) {
    const double v = value(static_cast<uint8_t>(c));
    if (!std::isfinite(v)) continue;
    float lo = static_cast<float>(v), hi = lo;
    xs.push_back(lo);
    for (int i = 0; i < 3; ++i) {
      lo = std::nextafter(lo, -kInf), hi = std::nextafter(hi, kInf);
      xs.push_back(std::fabs(lo)), xs.push_back(hi);
    }
  }
  const size_t positive = xs.size();
  for (size_t i = 0; i < positive; ++i) xs.push_back(-xs[i]);
  return xs;
}

void ExpectSameFloat(float actual, double expected, int code) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual)) << "code " << code;
    EXPECT_EQ(std::signbit(actual), std::signbit(expected)) << "code " << code;
  } else {
    EXPECT_EQ(static_cast<double>(actual), expected) << "code " << code;
    EXPECT_EQ(std::signbit(actual), std::signbit(expected)) << "code " << code;
  }
}

// ---- E4M3 ----

TEST(E4M3, Decode_All256Codes_MatchBitFields) {
  for (int c = 0; c < 256; ++c) ExpectSameFloat(E4M3ToFloat(static_cast<uint8_t>(c)), E4M3Value(c), c);
}

TEST(E4M3, Decode_SpecValues) {
  EXPECT_EQ(E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0x08), 0.015625f);     // min normal 2^-6
  EXPECT_EQ(E4M3ToFloat(0x07), 0.013671875f);  // max subnormal 7 * 2^-9
  EXPECT_EQ(E4M3ToFloat(0x01), 0.001953125f);  // min subnormal 2^-9
  EXPECT_EQ(Bits(E4M3ToFloat(0x80)), Bits(-0.0f));
  EXPECT_EQ(Bits(E4M3ToFloat(0x00)), 0u);
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xff)));
  EXPECT_EQ(E4M3ToFloat(0x78), 256.0f);  // S.1111.000 is a number in E4M3, not infinity
}

TEST(E4M3, Encode_DenseSweep_MatchesNearestCodeSearch) {
  int64_t mismatches = 0;
  for (float x : Sweep(E4M3Value)) {
    const uint8_t want = NearestFp8(x, E4M3Value);
    const uint8_t got = FloatToE4M3(x);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "x = " << x << " (bits " << std::hex << Bits(x) << "): got " << int{got} << " want "
                    << int{want};
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Every halfway point between neighbouring codes rounds to the even code; one ulp either side decides.
TEST(E4M3, Encode_Midpoints_TiesToEven) {
  for (int c = 0; c < 0x7e; ++c) {
    const float lo = static_cast<float>(E4M3Value(c)), hi = static_cast<float>(E4M3Value(c + 1));
    const float mid = (lo + hi) / 2;  // exact: at most five significant bits
    ASSERT_EQ(static_cast<double>(mid), (E4M3Value(c) + E4M3Value(c + 1)) / 2);
    const int even = (c & 1) == 0 ? c : c + 1;
    EXPECT_EQ(FloatToE4M3(mid), even) << mid;
    EXPECT_EQ(FloatToE4M3(-mid), 0x80 | even) << -mid;
    EXPECT_EQ(FloatToE4M3(std::nextafter(mid, 0.0f)), c) << mid;
    EXPECT_EQ(FloatToE4M3(std::nextafter(mid, kInf)), c + 1) << mid;
  }
}

TEST(E4M3, Encode_SaturatesAboveMax) {
  // 464 is halfway between 448 (...110, even) and 480 (the NaN pattern); everything from there up clamps.
  for (float x :
       {448.0f, 449.0f, 463.99997f, 464.0f, 464.00003f, 479.0f, 480.0f, 481.0f, 1e6f, 3.4e38f, kInf}) {
    EXPECT_EQ(FloatToE4M3(x), 0x7e) << x;
    EXPECT_EQ(FloatToE4M3(-x), 0xfe) << -x;
  }
  // Below the max, ordinary rounding: 432 is halfway between 416 (0x7d, odd) and 448 (0x7e, even).
  EXPECT_EQ(FloatToE4M3(447.0f), 0x7e);
  EXPECT_EQ(FloatToE4M3(432.0f), 0x7e);
  EXPECT_EQ(FloatToE4M3(431.99997f), 0x7d);
}

TEST(E4M3, Encode_NaN_IsCanonicalNaNOfItsSign) {
  EXPECT_EQ(FloatToE4M3(kNaN), 0x7f);
  EXPECT_EQ(FloatToE4M3(-kNaN), 0xff);
  EXPECT_EQ(FloatToE4M3(FromBits(0x7f800001u)), 0x7f);  // signalling
  EXPECT_EQ(FloatToE4M3(FromBits(0xffc12345u)), 0xff);
}

TEST(E4M3, Encode_ZerosAndSubnormals) {
  EXPECT_EQ(FloatToE4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4M3(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(FloatToE4M3(-std::numeric_limits<float>::denorm_min()), 0x80);
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -10)), 0x00);  // tie 0 | 2^-9: even 0
  EXPECT_EQ(FloatToE4M3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  EXPECT_EQ(FloatToE4M3(3 * std::ldexp(1.0f, -10)), 0x02);   // tie 1 | 2: even 2
  EXPECT_EQ(FloatToE4M3(15 * std::ldexp(1.0f, -10)), 0x08);  // tie 7 | min normal
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -6)), 0x08);
}

TEST(E4M3, RoundTrip_EveryFiniteCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c);
  }
}

// The half trick of the AVX2 GEMM: an E4M3 byte b placed as ((b & 0x80) << 8) | ((b & 0x7f) << 7) is the
// IEEE binary16 of value(b) * 2^-8 for every finite code, subnormals included.
__attribute__((target("f16c"))) float HardwareHalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t HardwareFloatToHalf(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
bool HasF16c() { return GetCpuFeatures().f16c; }

TEST(E4M3, HalfTrick_AllFiniteCodes_AreValueTimes2ToMinus8) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const uint16_t half = static_cast<uint16_t>(((c & 0x80) << 8) | ((c & 0x7f) << 7));
    const double want = std::ldexp(E4M3Value(c), -8);
    EXPECT_EQ(static_cast<double>(HalfToFloat(half)), want) << "code " << c;
    EXPECT_EQ(std::signbit(HalfToFloat(half)), std::signbit(want)) << "code " << c;
    if (HasF16c()) EXPECT_EQ(static_cast<double>(HardwareHalfToFloat(half)), want) << "code " << c;
  }
}

// ---- E5M2 ----

TEST(E5M2, Decode_All256Codes_MatchBitFields) {
  for (int c = 0; c < 256; ++c) ExpectSameFloat(E5M2ToFloat(static_cast<uint8_t>(c)), E5M2Value(c), c);
}

TEST(E5M2, Decode_SpecValues) {
  EXPECT_EQ(E5M2ToFloat(0x7b), 57344.0f);
  EXPECT_EQ(E5M2ToFloat(0x3c), 1.0f);
  EXPECT_EQ(E5M2ToFloat(0x04), std::ldexp(1.0f, -14));  // min normal
  EXPECT_EQ(E5M2ToFloat(0x01), std::ldexp(1.0f, -16));  // min subnormal
  EXPECT_EQ(E5M2ToFloat(0x7c), kInf);
  EXPECT_EQ(E5M2ToFloat(0xfc), -kInf);
  for (uint8_t c : {0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff}) EXPECT_TRUE(std::isnan(E5M2ToFloat(c))) << int{c};
}

TEST(E5M2, Encode_DenseSweep_MatchesNearestCodeSearch) {
  int64_t mismatches = 0;
  for (float x : Sweep(E5M2Value)) {
    const uint8_t want = NearestFp8(x, E5M2Value);
    const uint8_t got = FloatToE5M2(x);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "x = " << x << " (bits " << std::hex << Bits(x) << "): got " << int{got} << " want "
                    << int{want};
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(E5M2, Encode_Midpoints_TiesToEven) {
  for (int c = 0; c < 0x7b; ++c) {
    const float lo = static_cast<float>(E5M2Value(c)), hi = static_cast<float>(E5M2Value(c + 1));
    const float mid = (lo + hi) / 2;
    const int even = (c & 1) == 0 ? c : c + 1;
    EXPECT_EQ(FloatToE5M2(mid), even) << mid;
    EXPECT_EQ(FloatToE5M2(-mid), 0x80 | even) << -mid;
    EXPECT_EQ(FloatToE5M2(std::nextafter(mid, 0.0f)), c) << mid;
    EXPECT_EQ(FloatToE5M2(std::nextafter(mid, kInf)), c + 1) << mid;
  }
}

TEST(E5M2, Encode_SaturatesAboveMax_NaNAndZeros) {
  // 61440 is halfway between the max 57344 and 65536 (which would be infinity): saturation gives max.
  for (float x : {57344.0f, 57345.0f, 61440.0f, 61441.0f, 65536.0f, 1e9f, 3.4e38f, kInf}) {
    EXPECT_EQ(FloatToE5M2(x), 0x7b) << x;
    EXPECT_EQ(FloatToE5M2(-x), 0xfb) << -x;
  }
  EXPECT_EQ(FloatToE5M2(kNaN), 0x7e);
  EXPECT_EQ(FloatToE5M2(-kNaN), 0xfe);
  EXPECT_EQ(FloatToE5M2(0.0f), 0x00);
  EXPECT_EQ(FloatToE5M2(-0.0f), 0x80);
  EXPECT_EQ(FloatToE5M2(std::ldexp(1.0f, -17)), 0x00);  // tie 0 | 2^-16
  EXPECT_EQ(FloatToE5M2(3 * std::ldexp(1.0f, -17)), 0x02);
}

TEST(E5M2, RoundTrip_EveryFiniteCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) >= 0x7c) continue;
    EXPECT_EQ(FloatToE5M2(E5M2ToFloat(static_cast<uint8_t>(c))), c);
  }
}

// ---- bf16 and IEEE binary16 ----

// Nearest-even rounding of a finite fp32 to a format whose non-negative codes increase with their value:
// lo is the largest code not above |x|, and the code after the largest finite one stands for the value the
// format would have with an unbounded exponent (IEEE 754 overflow: round, then overflow to infinity).
template <typename ValueFn>
uint16_t NearestEven(float x, uint16_t max_finite, uint16_t inf_code, double inf_round_value, ValueFn value) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  // Binary search for lo: value(lo) <= a < value(lo + 1).
  uint32_t lo = 0, hi = max_finite + 1u;
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (value(static_cast<uint16_t>(mid)) <= a ? lo : hi) = mid;
  }
  const double v_lo = value(static_cast<uint16_t>(lo));
  const double v_hi = lo == max_finite ? inf_round_value : value(static_cast<uint16_t>(lo + 1));
  const double d_lo = a - v_lo, d_hi = v_hi - a;
  uint32_t code = lo;
  if (d_hi < d_lo || (d_hi == d_lo && (lo & 1) != 0)) code = lo + 1;
  if (code > max_finite) code = inf_code;
  return static_cast<uint16_t>(sign | code);
}

double Bf16Value(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }
double HalfValue(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0x1f) return m == 0 ? sign * HUGE_VAL : std::copysign(std::nan(""), sign);
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

std::vector<float> FloatSweep(uint32_t stride) {
  std::vector<float> xs;
  for (uint64_t u = 0; u < 0x7f800000u; u += stride) {
    xs.push_back(FromBits(static_cast<uint32_t>(u)));
    xs.push_back(-FromBits(static_cast<uint32_t>(u)));
  }
  return xs;
}

TEST(Bf16, Decode_AllCodes_AreTheUpperHalfOfFp32) {
  for (uint32_t v = 0; v < 65536; ++v) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(v));
    if (std::isnan(Bf16Value(v))) {
      EXPECT_TRUE(std::isnan(f)) << v;
    } else {
      EXPECT_EQ(Bits(f), v << 16) << v;
    }
  }
}

TEST(Bf16, Encode_DenseSweep_MatchesNearestEven) {
  int64_t mismatches = 0;
  for (float x : FloatSweep(997)) {
    const uint16_t want = NearestEven(x, 0x7f7f, 0x7f80, std::ldexp(1.0, 128), Bf16Value);
    if (FloatToBf16(x) != want && ++mismatches <= 10) {
      ADD_FAILURE() << std::hex << "bits " << Bits(x) << ": got " << FloatToBf16(x) << " want " << want;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Bf16, Encode_TiesInfNaNSubnormals) {
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808000u)), 0x3f80);  // 1 + 2^-8: tie, even stays
  EXPECT_EQ(FloatToBf16(FromBits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(FloatToBf16(FromBits(0x00008000u)), 0x0000);  // subnormal tie to 0
  EXPECT_EQ(FloatToBf16(FromBits(0x00018000u)), 0x0002);
  EXPECT_EQ(FloatToBf16(FromBits(0x007fffffu)), 0x0080);  // largest subnormal rounds to min normal
  EXPECT_EQ(FloatToBf16(FromBits(0x7f7f7fffu)), 0x7f7f);  // stays at max
  EXPECT_EQ(FloatToBf16(FromBits(0x7f7f8000u)), 0x7f80);  // tie between max (odd) and overflow: inf
  EXPECT_EQ(FloatToBf16(kInf), 0x7f80);
  EXPECT_EQ(FloatToBf16(-kInf), 0xff80);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u, 0xffc00000u}) {
    const uint16_t b = FloatToBf16(FromBits(nan));
    EXPECT_TRUE(std::isnan(Bf16ToFloat(b))) << std::hex << nan;
    EXPECT_NE(b & 0x0040, 0) << "quiet";
    EXPECT_EQ(b & 0x8000, (nan >> 16) & 0x8000) << "sign kept";
  }
}

TEST(Half, Decode_AllCodes_MatchBitFieldsAndHardware) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    ExpectSameFloat(f, HalfValue(static_cast<uint16_t>(h)), static_cast<int>(h));
    if (HasF16c()) {
      const float hw = HardwareHalfToFloat(static_cast<uint16_t>(h));
      if (std::isnan(hw)) {
        EXPECT_TRUE(std::isnan(f));
      } else {
        EXPECT_EQ(Bits(f), Bits(hw)) << h;
      }
    }
  }
}

TEST(Half, Encode_DenseSweep_MatchesNearestEvenAndHardware) {
  int64_t mismatches = 0;
  for (float x : FloatSweep(509)) {
    const uint16_t want = NearestEven(x, 0x7bff, 0x7c00, 65536.0, HalfValue);
    const uint16_t got = FloatToHalf(x);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << std::hex << "bits " << Bits(x) << ": got " << got << " want " << want;
    }
    if (HasF16c() && got != HardwareFloatToHalf(x) && ++mismatches <= 10) {
      ADD_FAILURE() << std::hex << "bits " << Bits(x) << ": got " << got << " F16C "
                    << HardwareFloatToHalf(x);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Half, Encode_TiesInfNaNSubnormals) {
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65519.996f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // tie between max (odd) and overflow: inf
  EXPECT_EQ(FloatToHalf(-1e9f), 0xfc00);
  EXPECT_EQ(FloatToHalf(kInf), 0x7c00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);                          // tie 0 | min subnormal
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);                      // tie 1 | 2
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // tie 0x3ff | min normal
  EXPECT_EQ(FloatToHalf(FromBits(0x3f801000u)), 0x3c00);  // 1 + 2^-11: tie, even stays
  EXPECT_EQ(FloatToHalf(FromBits(0x3f803000u)), 0x3c02);  // tie, odd rounds up
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(kNaN), 0x7e00);
  EXPECT_EQ(FloatToHalf(-kNaN), 0xfe00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(FromBits(0x7f800001u)))));
}

}  // namespace
}  // namespace qrag::quant
