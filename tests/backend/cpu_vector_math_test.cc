// The vectorized exp and GELU of the CPU encoder ops (cpu_vector_math.h): accuracy against double-precision
// std::exp / std::erf over dense sweeps, special values, and independence of an element's value from its
// position in the array (vector body vs scalar tail).
#include "server/backend/cpu/cpu_vector_math.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "server/quant/row_quant.h"

namespace qrag::backend::cpu {
namespace {

double Ulp(float v) {
  const float a = std::fabs(v);
  return std::nextafter(a, std::numeric_limits<float>::infinity()) - a;
}

TEST(CpuVectorMath, ExpShiftedSum_SweepMinus87To88_Within2Ulp) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 88.0f; v += 0.00137f) x.push_back(v);
  std::vector<float> y = x;
  ExpShiftedSum(y.data(), y.size(), 0.0f);  // the sum overflows fp32 here; the softmax test checks it
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    ASSERT_LE(std::fabs(y[i] - want), 2 * Ulp(static_cast<float>(want))) << "x = " << x[i];
  }
}

TEST(CpuVectorMath, ExpShiftedSum_SoftmaxRow_ShiftAppliedAndSumMatches) {
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 4.0f);
  std::vector<float> x(1003);
  for (float& v : x) v = d(rng);
  const float shift = 11.5f;
  std::vector<float> y = x;
  const float sum = ExpShiftedSum(y.data(), y.size(), shift);
  double want_sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i] - shift));  // the fp32 difference, as computed
    want_sum += want;
    ASSERT_NEAR(y[i], want, 2 * Ulp(static_cast<float>(want)) + 1e-45) << i;
  }
  EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum);
}

TEST(CpuVectorMath, ExpShiftedSum_SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, -1000.0f, -87.5f, 0.0f, -0.0f, 1.0f, std::nanf(""), 0.5f, -inf};
  std::vector<float> y = x;
  ExpShiftedSum(y.data(), y.size(), 0.0f);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);  // below the underflow limit: flushed to +0
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[4], 1.0f);
  EXPECT_NEAR(y[5], std::exp(1.0), 2 * Ulp(std::exp(1.0f)));
  EXPECT_TRUE(std::isnan(y[6]));
  EXPECT_EQ(y[8], 0.0f);
}

TEST(CpuVectorMath, ExpShiftedSum_ValueIndependentOfPosition) {
  // The same value in the vector body and in the scalar tail (n = 8 k + 5) gives the same bits.
  std::vector<float> x(21);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -3.0f + 0.37f * static_cast<float>(i % 5);
  std::vector<float> y = x;
  ExpShiftedSum(y.data(), y.size(), 0.25f);
  for (size_t i = 5; i < x.size(); ++i) EXPECT_EQ(y[i], y[i % 5]) << i;
}

// The exact GELU, x/2 erfc(-x/sqrt2) in double (free of 1 + erf's cancellation in the negative tail).
double ExactGelu(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }

// Absolute error within 2e-7 |x| everywhere (x/2 times erf's error budget), and relative error within
// 4e-7 (1 + x^2): fp32's rounding of z = |x|/sqrt2 and of z^2 inside exp(-z^2) grows with x^2, which only
// matters in the negative tail, where the values are tiny (GELU(-3) = -0.004).
TEST(CpuVectorMath, GeluErf_SweepMinus10To10_MatchesExactGelu) {
  std::vector<float> x;
  for (float v = -10.0f; v <= 10.0f; v += 0.000731f) x.push_back(v);
  std::vector<float> out(x.size());
  GeluErf(x.data(), x.size(), out.data());
  double worst_abs = 0, worst_rel = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = ExactGelu(x[i]);
    const double err = std::fabs(out[i] - want);
    worst_abs = std::max(worst_abs, err / std::fabs(x[i]));
    ASSERT_LE(err, 2e-7 * std::fabs(x[i]) + 1e-30) << "x = " << x[i] << " got " << out[i] << " want " << want;
    if (want != 0) {
      const double scale = 1.0 + static_cast<double>(x[i]) * x[i];
      worst_rel = std::max(worst_rel, err / std::fabs(want) / scale);
      ASSERT_LE(err, 4e-7 * scale * std::fabs(want)) << "x = " << x[i] << " got " << out[i] << " want " << want;
    }
  }
  std::printf("worst |error| / |x| %.3g, worst relative error / (1 + x^2) %.3g\n", worst_abs, worst_rel);
}

TEST(CpuVectorMath, GeluErf_NotTanhApproximation_InPlace) {
  std::vector<float> x = {1.0f, -3.0f, 0.0f, -0.0f, 3.0f, 0.5f, -0.5f, 2.0f, 1.0f};
  GeluErf(x.data(), x.size(), x.data());
  EXPECT_NEAR(x[0], 0.8413447f, 2e-7);  // tanh approximation: 0.841191990
  EXPECT_NEAR(x[8], 0.8413447f, 2e-7);  // the scalar tail agrees
  EXPECT_EQ(x[0], x[8]);
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[1], ExactGelu(-3.0), 2e-6 * std::fabs(ExactGelu(-3.0)));
}

TEST(CpuVectorMath, GeluErf_ValueIndependentOfPosition) {
  // Full 16- and 8-lane vectors, and tails of every length: an element's bits do not depend on where it falls.
  for (int n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 47}) {
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = -4.0f + 1.37f * static_cast<float>(i % 7);
    std::vector<float> out(n);
    GeluErf(x.data(), n, out.data());
    for (int i = 7; i < n; ++i) ASSERT_EQ(out[i], out[i % 7]) << n << " " << i;
    std::vector<float> one(1);
    for (int i = 0; i < std::min(n, 7); ++i) {
      GeluErf(&x[i], 1, one.data());
      ASSERT_EQ(one[0], out[i]) << n << " " << i;
    }
  }
}

// SoftmaxRows: rows sum to 1 and match the double-precision softmax, for lengths around the lane widths; the
// max is subtracted (no overflow for large scores); a -inf score gets probability 0.
TEST(CpuVectorMath, SoftmaxRows_MatchesDoubleSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 5.0f);
  for (int cols : {1, 2, 15, 16, 17, 33, 254, 256}) {
    const int rows = 3;
    std::vector<float> x(static_cast<size_t>(rows) * cols);
    for (float& v : x) v = d(rng);
    x[0] += 500.0f;  // exp(500) overflows fp32 without the shift
    if (cols > 1) x[cols + 1] = -INFINITY;
    std::vector<float> y = x;
    SoftmaxRows(y.data(), rows, cols);
    for (int r = 0; r < rows; ++r) {
      float mx = -INFINITY;
      for (int j = 0; j < cols; ++j) mx = std::max(mx, x[r * cols + j]);
      double sum = 0;  // of exp of the fp32 differences, as computed
      for (int j = 0; j < cols; ++j) sum += std::exp(static_cast<double>(x[r * cols + j] - mx));
      double got_sum = 0;
      for (int j = 0; j < cols; ++j) {
        const double want = std::exp(static_cast<double>(x[r * cols + j] - mx)) / sum;
        ASSERT_NEAR(y[r * cols + j], want, 1e-6 * want + 1e-30) << cols << " " << r << " " << j;
        got_sum += y[r * cols + j];
      }
      EXPECT_NEAR(got_sum, 1.0, 1e-5) << cols << " " << r;
    }
    if (cols > 1) EXPECT_EQ(y[cols + 1], 0.0f);
  }
}

TEST(CpuVectorMath, GeluErf_Nan_Propagates) {
  std::vector<float> x = {std::nanf(""), 1.0f};
  GeluErf(x.data(), x.size(), x.data());
  EXPECT_TRUE(std::isnan(x[0]));
}


// The embedder's int8 quantizer: bit for bit quant::QuantizeRowsInt8 (the one CUDA and the own kernels share),
// on rows of every length around the 16-lane width, with ties, zeros, subnormals, NaN and infinities.
TEST(CpuVectorMath, QuantizeRowsInt8Fast_BitForBitTheReference) {
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int cols : {1, 15, 16, 17, 31, 32, 33, 384, 1537}) {
    for (int variant = 0; variant < 6; ++variant) {
      const int rows = 5;
      std::vector<float> x(static_cast<size_t>(rows) * cols);
      for (float& v : x) v = d(rng);
      if (variant == 1) {  // exact ties after scaling: amax 127 -> scale 1, values k + 0.5
        for (int c = 0; c < cols; ++c) x[c] = static_cast<float>(c % 20) - 9.5f;
        x[0] = 127.0f;
      }
      if (variant == 2) std::fill(x.begin(), x.begin() + cols, 0.0f);                           // all zero
      if (variant == 3) x[static_cast<size_t>(cols) / 2] = NAN;                                  // NaN: scale 1
      if (variant == 4) x[static_cast<size_t>(cols) - 1] = -INFINITY;                           // inf: scale 1
      if (variant == 5) std::fill(x.begin(), x.begin() + cols, 1e-42f);                         // subnormal
      std::vector<int8_t> want(x.size()), got(x.size(), 99);
      std::vector<float> want_s(rows), got_s(rows, -1);
      quant::QuantizeRowsInt8(x.data(), rows, cols, want.data(), want_s.data());
      QuantizeRowsInt8Fast(x.data(), rows, cols, got.data(), got_s.data());
      for (int r = 0; r < rows; ++r) {
        ASSERT_EQ(std::memcmp(&want_s[r], &got_s[r], sizeof(float)), 0) << cols << " " << variant << " row " << r;
      }
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], want[i]) << cols << " " << variant << " at " << i;
    }
  }
}

TEST(CpuVectorMath, DequantizeInt32_ScalesAndBias) {
  const int rows = 3, n = 37;
  std::vector<int32_t> acc(rows * n);
  std::vector<float> sx = {0.5f, 2.0f, 0.25f}, sw(n), bias(n), out(acc.size(), NAN), out_nb(acc.size(), NAN);
  for (int i = 0; i < rows * n; ++i) acc[i] = (i * 7919) % 20001 - 10000;
  for (int j = 0; j < n; ++j) {
    sw[j] = 0.125f * (j + 1);
    bias[j] = static_cast<float>(j) - 18.0f;
  }
  DequantizeInt32(acc.data(), rows, n, sx.data(), sw.data(), bias.data(), out.data());
  DequantizeInt32(acc.data(), rows, n, sx.data(), sw.data(), nullptr, out_nb.data());
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      const float s = sx[r] * sw[j];  // powers of two and small integers: every product below is exact
      ASSERT_EQ(out[r * n + j], static_cast<float>(acc[r * n + j]) * s + bias[j]) << r << "," << j;
      ASSERT_EQ(out_nb[r * n + j], static_cast<float>(acc[r * n + j]) * s) << r << "," << j;
    }
  }
}

}  // namespace
}  // namespace qrag::backend::cpu
