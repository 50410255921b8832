// Per-row symmetric quantization (row_quant.h): scales, codes, zero and non-finite rows, clamping, ties.
#include "server/quant/row_quant.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "server/quant/bf16.h"
#include "server/quant/fp8.h"

namespace qrag::quant {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Rows of very different magnitudes, with signs, so that scales and codes cover the format.
std::vector<float> RandomRows(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float magnitude = std::ldexp(1.0f, static_cast<int>(r % 40) - 20);
    for (int64_t c = 0; c < cols; ++c) x[r * cols + c] = normal(rng) * magnitude;
  }
  return x;
}

float Amax(const float* row, int64_t cols) {
  float amax = 0.0f;
  for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
  return amax;
}

TEST(RowQuantE4M3, Random_ScaleIsAmaxOver448_CodesEncodeXOverScale_Rows40_Cols67) {
  const int64_t rows = 40, cols = 67;
  const std::vector<float> x = RandomRows(rows, cols, 7);
  std::vector<uint8_t> q(rows * cols);
  std::vector<float> scales(rows);
  QuantizeRowsE4M3(x.data(), rows, cols, q.data(), scales.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float amax = Amax(&x[r * cols], cols);
    ASSERT_EQ(scales[r], amax / 448.0f) << "row " << r;
    bool saw_max = false;
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ(q[r * cols + c], FloatToE4M3(x[r * cols + c] / scales[r])) << r << "," << c;
      saw_max |= (q[r * cols + c] & 0x7f) == 0x7e;
    }
    EXPECT_TRUE(saw_max) << "the amax element maps to +-448, row " << r;
  }
}

TEST(RowQuantInt8, Random_ScaleIsAmaxOver127_CodesRoundXOverScale_Rows40_Cols67) {
  const int64_t rows = 40, cols = 67;
  const std::vector<float> x = RandomRows(rows, cols, 11);
  std::vector<int8_t> q(rows * cols);
  std::vector<float> scales(rows);
  QuantizeRowsInt8(x.data(), rows, cols, q.data(), scales.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float amax = Amax(&x[r * cols], cols);
    ASSERT_EQ(scales[r], amax / 127.0f) << "row " << r;
    bool saw_max = false;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = x[r * cols + c] / scales[r];
      // std::nearbyint rounds half to even in the default rounding mode.
      const float want = std::min(127.0f, std::max(-127.0f, std::nearbyint(v)));
      ASSERT_EQ(q[r * cols + c], static_cast<int8_t>(want)) << r << "," << c << " v=" << v;
      saw_max |= std::abs(q[r * cols + c]) == 127;
    }
    EXPECT_TRUE(saw_max) << "row " << r;
  }
}

TEST(RowQuantE4M3, ZeroRows_ScaleOne_CodesZero) {
  const std::vector<float> x = {0.0f, 0.0f, 0.0f, 1.0f, -2.0f, 0.0f, -0.0f, -0.0f, -0.0f};
  std::vector<uint8_t> q(9, 0xaa);
  std::vector<float> scales(3);
  QuantizeRowsE4M3(x.data(), 3, 3, q.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(scales[1], 2.0f / 448.0f);
  EXPECT_EQ(scales[2], 1.0f);
  EXPECT_EQ(q,
            (std::vector<uint8_t>{0x00, 0x00, 0x00, FloatToE4M3(448.0f / 2), 0xfe, 0x00, 0x80, 0x80, 0x80}));
}

TEST(RowQuantInt8, ZeroRows_ScaleOne_CodesZero) {
  const std::vector<float> x = {0.0f, 0.0f, -0.0f, 0.0f};
  std::vector<int8_t> q(4, 99);
  std::vector<float> scales(2);
  QuantizeRowsInt8(x.data(), 2, 2, q.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(scales[1], 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{0, 0, 0, 0}));
}

// One huge outlier sets the scale; the ordinary values fall below half the smallest subnormal (2^-10 of
// the scale) and flush to signed zeros, while the outlier itself is +-448.
TEST(RowQuantE4M3, SingleHugeOutlier_FlushesTheRestToZero) {
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 1e6f, -0.25f, 2.2f};
  std::vector<uint8_t> q(x.size());
  float scale;
  QuantizeRowsE4M3(x.data(), 1, static_cast<int64_t>(x.size()), q.data(), &scale);
  EXPECT_EQ(scale, 1e6f / 448.0f);
  EXPECT_EQ(q, (std::vector<uint8_t>{0x00, 0x80, 0x00, 0x7e, 0x80, 0x01}));  // 2.2 / scale > 2^-10
}

TEST(RowQuantInt8, SingleHugeOutlier_RoundsTheRestToZero) {
  const std::vector<float> x = {1.0f, -2.0f, 1e6f, 4000.0f, -3937.0f};
  std::vector<int8_t> q(x.size());
  float scale;
  QuantizeRowsInt8(x.data(), 1, static_cast<int64_t>(x.size()), q.data(), &scale);
  EXPECT_EQ(scale, 1e6f / 127.0f);
  // 4000 / scale = 0.508 rounds up; 3937 / scale = 0.49999 rounds down.
  EXPECT_EQ(q, (std::vector<int8_t>{0, 0, 127, 1, 0}));
}

// amax = 127 gives scale 1 exactly, so x / scale = x: halves round to the even integer.
TEST(RowQuantInt8, HalfTies_RoundToEven) {
  const std::vector<float> x = {127.0f, 0.5f,  1.5f,  2.5f,   3.5f,    -0.5f,
                                -1.5f,  -2.5f, -3.5f, 126.5f, -126.5f, 2.5001f};
  std::vector<int8_t> q(x.size());
  float scale;
  QuantizeRowsInt8(x.data(), 1, static_cast<int64_t>(x.size()), q.data(), &scale);
  ASSERT_EQ(scale, 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 0, 2, 2, 4, 0, -2, -2, -4, 126, -126, 3}));
}

TEST(RowQuantInt8, HalfTies_WithScaleTwo) {
  const std::vector<float> x = {254.0f, 1.0f, 3.0f, 5.0f, -7.0f};
  std::vector<int8_t> q(x.size());
  float scale;
  QuantizeRowsInt8(x.data(), 1, static_cast<int64_t>(x.size()), q.data(), &scale);
  ASSERT_EQ(scale, 2.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 0, 2, 2, -4}));
}

// A row holding inf or NaN keeps scale 1; the elements go through the format's own rules: E4M3 saturates
// and keeps NaN, int8 clamps to +-127 and maps NaN to 0.
TEST(RowQuantE4M3, NonFiniteRow_ScaleOne_SaturatesAndKeepsNaN) {
  const std::vector<float> x = {kNaN, 1.0f, -kInf, 500.0f, 0.0f, 2.0f, 4.0f, 8.0f};
  std::vector<uint8_t> q(x.size());
  std::vector<float> scales(2);
  QuantizeRowsE4M3(x.data(), 2, 4, q.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(scales[1], 8.0f / 448.0f);
  EXPECT_EQ(std::vector<uint8_t>(q.begin(), q.begin() + 4), (std::vector<uint8_t>{0x7f, 0x38, 0xfe, 0x7e}));
}

TEST(RowQuantInt8, NonFiniteRow_ScaleOne_ClampsAndZeroesNaN) {
  const std::vector<float> x = {kInf, 300.0f, -500.0f, 2.5f, kNaN, -kInf};
  std::vector<int8_t> q(x.size());
  float scale;
  QuantizeRowsInt8(x.data(), 1, static_cast<int64_t>(x.size()), q.data(), &scale);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 127, -127, 2, 0, -127}));
}

// A row whose amax is so small that amax / qmax underflows to 0 must not divide by zero.
TEST(RowQuant, SubnormalAmax_ScaleDoesNotUnderflowToZero) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  const std::vector<float> x = {tiny, -tiny, 0.0f};
  std::vector<uint8_t> q8(3);
  std::vector<int8_t> qi(3);
  float s8, si;
  QuantizeRowsE4M3(x.data(), 1, 3, q8.data(), &s8);
  QuantizeRowsInt8(x.data(), 1, 3, qi.data(), &si);
  EXPECT_GT(s8, 0.0f);
  EXPECT_GT(si, 0.0f);
  for (int c = 0; c < 3; ++c) {
    EXPECT_FALSE(std::isnan(E4M3ToFloat(q8[c])));
    EXPECT_EQ(q8[c], FloatToE4M3(x[c] / s8));
  }
}

TEST(RoundToBf16, MatchesFloatToBf16_IncludingSpecials) {
  std::vector<float> x = RandomRows(4, 50, 3);
  for (float special :
       {0.0f, -0.0f, kInf, -kInf, kNaN, std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u),
        std::numeric_limits<float>::denorm_min(), 3.4e38f}) {
    x.push_back(special);
  }
  std::vector<uint16_t> out(x.size());
  RoundToBf16(x.data(), static_cast<int64_t>(x.size()), out.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], FloatToBf16(x[i])) << i;
}

}  // namespace
}  // namespace qrag::quant
