// LNS factored dot product == direct LNS sum; 2:4 pruning pattern; w4 quantization (both grids) and validation.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/quant/bf16.h"
#include "server/quant/clipping.h"
#include "server/quant/gguf_blocks.h"
#include "server/quant/lns_dot.h"
#include "server/quant/log_format.h"
#include "server/quant/pruning.h"
#include "server/quant/w4.h"
#include "tests/test_util.h"

namespace qrag::quant {
namespace {

using ::testing::HasSubstr;

std::vector<uint32_t> RandomLogCodes(const LogFormat& f, int n, std::mt19937& rng, bool with_zeros) {
  std::uniform_int_distribution<uint32_t> u(with_zeros ? 0 : 1, f.max_u());
  std::bernoulli_distribution sign(0.5);
  std::vector<uint32_t> c(n);
  for (auto& v : c) {
    v = u(rng);
    if (v != 0 && sign(rng)) v |= f.sign_mask();
  }
  return c;
}

class LnsDot : public ::testing::TestWithParam<LogFormat> {};

TEST_P(LnsDot, FactoredEqualsDirectSum) {
  const LogFormat f = GetParam();
  std::mt19937 rng(42);
  for (int n : {1, 7, 64, 1000, 4096}) {
    const auto a = RandomLogCodes(f, n, rng, true), b = RandomLogCodes(f, n, rng, true);
    auto fac = LnsDotFactored(f, a, b);
    auto dir = LnsDotDirect(f, a, b);
    ASSERT_TRUE(fac.ok() && dir.ok());
    long double mag = 0;  // sum of |terms|, the scale of the rounding error
    for (int i = 0; i < n; ++i) {
      const float pa = LogToFloat(f, a[i]), pb = LogToFloat(f, b[i]);
      mag += std::fabs(static_cast<long double>(pa) * pb);
    }
    // Same exact quantity; the factored form rounds 2 * 2^f times in double, the direct one per term in
    // long double: both within a few units of double rounding of sum |terms|.
    EXPECT_LE(std::fabs(static_cast<long double>(fac->value) - *dir), mag * 4 * (1 << f.frac_bits) * 0x1p-52L)
        << "n " << n;
  }
}

TEST_P(LnsDot, PartialSumsAreExactIntegers) {
  // Rebuild the factored result from the partial sums in long double: equal to the direct sum to long
  // double rounding, i.e. nothing was lost while accumulating.
  const LogFormat f = GetParam();
  std::mt19937 rng(7);
  const auto a = RandomLogCodes(f, 512, rng, false), b = RandomLogCodes(f, 512, rng, false);
  auto fac = LnsDotFactored(f, a, b);
  long double rebuilt = 0;
  for (size_t r = 0; r < fac->partial_sums.size(); ++r) {
    rebuilt += std::ldexp(static_cast<long double>(fac->partial_sums[r]), fac->q_min) *
               static_cast<long double>(std::exp2(static_cast<double>(r) / (1 << f.frac_bits)));
  }
  long double mag = 0;
  for (size_t i = 0; i < a.size(); ++i) mag += std::fabs(static_cast<long double>(LogToFloat(f, a[i])) * LogToFloat(f, b[i]));
  EXPECT_LE(std::fabs(rebuilt - *LnsDotDirect(f, a, b)), mag * 1e-15L);
}

INSTANTIATE_TEST_SUITE_P(Formats, LnsDot, ::testing::Values(LogFormat{4, 3}, LogFormat{4, 0}, LogFormat{3, 5}),
                         [](const auto& info) {
                           return "Log" + std::to_string(info.param.int_bits) + "_" + std::to_string(info.param.frac_bits);
                         });

TEST(LnsDot, Log40_IntegerExponentsBitExact) {
  // f = 0: every term is +-2^q, so both forms are exact and equal bit for bit.
  const LogFormat f{4, 0};
  std::mt19937 rng(1);
  const auto a = RandomLogCodes(f, 300, rng, true), b = RandomLogCodes(f, 300, rng, true);
  EXPECT_EQ(static_cast<long double>(LnsDotFactored(f, a, b)->value), *LnsDotDirect(f, a, b));
}

TEST(LnsDot, HandComputedLog43) {
  // 1 * 2 + (-1) * 2^(1/8) * 2^(2/8) + 0 * 4 = 2 - 2^(3/8).
  const LogFormat f = kLog43;
  const std::vector<uint32_t> a = {56, 0x80 | 57, 0}, b = {64, 58, 72};
  EXPECT_NEAR(LnsDotFactored(f, a, b)->value, 2 - std::exp2(3.0 / 8), 1e-15);
}

TEST(LnsDot, NaNAndErrors) {
  const LogFormat f = kLog43;
  const std::vector<uint32_t> a = {56, f.nan_code()}, b = {56, 56};
  EXPECT_TRUE(std::isnan(LnsDotFactored(f, a, b)->value));
  EXPECT_TRUE(std::isnan(*LnsDotDirect(f, a, b)));
  EXPECT_THAT(LnsDotFactored(f, a, std::vector<uint32_t>{1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lengths 2 and 1")));
  EXPECT_THAT(LnsDotFactored(LogFormat{5, 2}, a, b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("m <= 4")));
}

// ---- 2:4 pruning ----

TEST(Prune2Of4, KeepsTheTwoLargestPerGroupTiesKeepEarlier) {
  std::vector<float> w = {1, -5, 3, 2, /**/ 0.5f, 0.5f, 0.5f, 0.5f, /**/ 9, 1, -8};  // 11 cols: last group of 3
  Prune2Of4(w.data(), 1, 11);
  EXPECT_THAT(w, ::testing::ElementsAre(0, -5, 3, 0, 0.5f, 0.5f, 0, 0, 9, 0, -8));
  EXPECT_TRUE(Is2Of4Sparse(w.data(), 1, 11));
}

TEST(Prune2Of4, RandomMatrixIsValidAndKeepsLargest) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  const int rows = 17, cols = 64;
  std::vector<float> w(rows * cols);
  for (float& v : w) v = g(rng);
  std::vector<float> orig = w;
  EXPECT_FALSE(Is2Of4Sparse(w.data(), rows, cols));
  Prune2Of4(w.data(), rows, cols);
  EXPECT_TRUE(Is2Of4Sparse(w.data(), rows, cols));
  for (int i = 0; i < rows * cols; i += 4) {
    int kept = 0;
    float min_kept = 1e9f, max_dropped = 0;
    for (int j = 0; j < 4; ++j) {
      if (w[i + j] != 0) {
        ++kept;
        EXPECT_EQ(w[i + j], orig[i + j]);
        min_kept = std::min(min_kept, std::fabs(orig[i + j]));
      } else {
        max_dropped = std::max(max_dropped, std::fabs(orig[i + j]));
      }
    }
    EXPECT_EQ(kept, 2);
    EXPECT_GE(min_kept, max_dropped);
  }
}

// ---- w4 ----

TEST(W4, QuantizeSymmetricOctav_Vector32_CodesScalesAndRaggedLastVector) {
  std::mt19937 rng(8);
  std::normal_distribution<float> g;
  const int64_t n = 5, k = 70;  // vectors of 32, 32, 6
  std::vector<float> w(n * k);
  for (float& v : w) v = g(rng);
  auto q = QuantizeW4(w.data(), n, k, W4Options{.grid = W4Grid::kSymmetric});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->grid(), W4Grid::kSymmetric);
  EXPECT_TRUE(q->mins.empty());
  EXPECT_EQ(q->row_bytes(), 35);
  EXPECT_EQ(q->vectors_per_row(), 3);
  ASSERT_TRUE(ValidateW4(*q, "test").ok());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t v = 0; v < 3; ++v) {
      const int64_t b = v * 32, e = std::min<int64_t>(k, b + 32);
      const double clip = OctavClip(absl::MakeConstSpan(w.data() + r * k + b, e - b), 4);
      EXPECT_EQ(q->scales[r * 3 + v], static_cast<float>(clip / 7));
    }
  }
  std::vector<float> deq(n * k);
  DequantizeW4Rows(q->view(), 0, n, deq.data());
  for (int64_t i = 0; i < n * k; ++i) {
    const float s = q->scales[(i / k) * 3 + (i % k) / 32];
    const int code = UnpackInt4(q->codes.data() + (i / k) * 35, i % k);
    EXPECT_GE(code, -7);
    EXPECT_LE(code, 7);
    EXPECT_EQ(deq[i], code * s);
    EXPECT_LE(std::fabs(deq[i] - std::clamp(w[i], -7 * s, 7 * s)), s / 2 * 1.0001f);
  }
}

TEST(W4, QuantizeAsymmetric_Vector32_MinMaxGridAndRaggedLastVector) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g;
  const int64_t n = 5, k = 70;  // vectors of 32, 32, 6
  std::vector<float> w(n * k);
  for (float& v : w) v = g(rng) + 0.3f;  // off-centre, as many real weight vectors are
  auto q = QuantizeW4(w.data(), n, k, W4Options{});  // the default grid
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->grid(), W4Grid::kAsymmetric);
  ASSERT_EQ(q->mins.size(), q->scales.size());
  ASSERT_TRUE(ValidateW4(*q, "test").ok());
  std::vector<float> deq(n * k);
  DequantizeW4Rows(q->view(), 0, n, deq.data());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t v = 0; v < 3; ++v) {
      const int64_t b = r * k + v * 32, e = r * k + std::min<int64_t>(k, v * 32 + 32);
      const float lo = *std::min_element(w.begin() + b, w.begin() + e);
      const float hi = *std::max_element(w.begin() + b, w.begin() + e);
      const float scale = q->scales[r * 3 + v], min = q->mins[r * 3 + v];
      EXPECT_EQ(min, lo);
      EXPECT_EQ(scale, static_cast<float>((static_cast<double>(hi) - lo) / 15));
      bool has0 = false, has15 = false;
      for (int64_t i = b; i < e; ++i) {
        const int u = UnpackUint4(q->codes.data() + r * 35, i - r * k);
        has0 |= u == 0;
        has15 |= u == 15;
        EXPECT_EQ(deq[i], std::fma(static_cast<float>(u), scale, min));
        EXPECT_EQ(deq[i], q->view().Dequantize(r, i - r * k));
        EXPECT_LE(std::fabs(deq[i] - w[i]), scale / 2 * 1.0001f);
      }
      EXPECT_TRUE(has0 && has15) << "the grid spans the vector's [min, max]";
    }
  }
}

// 10 log10(sum w^2 / sum (q - w)^2), in dB.
double SqnrDb(const std::vector<float>& w, const std::vector<float>& q) {
  double noise = 0, signal = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    noise += (static_cast<double>(q[i]) - w[i]) * (static_cast<double>(q[i]) - w[i]);
    signal += static_cast<double>(w[i]) * w[i];
  }
  return 10 * std::log10(signal / std::max(noise, 1e-300));
}

// A Q4_1 block (llama.cpp: value = d * q + m, codes 0..15 with the vector's minimum at 0 and its maximum at
// 15) comes back with the same codes and values within an ulp: the asymmetric grid is Q4_1's.
TEST(W4, AsymmetricGridReproducesQ4_1Blocks) {
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> code(0, 15), mantissa(1024, 2047), exponent(-14, -6), offset(-2047, 2047);
  constexpr int kBlocks = 64;
  std::vector<uint8_t> blocks(kBlocks * 20);
  std::vector<int> codes(kBlocks * 32);
  for (int b = 0; b < kBlocks; ++b) {
    uint8_t* blk = blocks.data() + b * 20;
    const uint16_t d = FloatToHalf(std::ldexp(static_cast<float>(mantissa(rng)), exponent(rng) - 10));
    const uint16_t m = FloatToHalf(std::ldexp(static_cast<float>(offset(rng)), -16));
    std::memcpy(blk, &d, 2);
    std::memcpy(blk + 2, &m, 2);
    int* c = codes.data() + b * 32;
    for (int i = 0; i < 32; ++i) c[i] = code(rng);
    c[b % 32] = 0;          // Q4_1 quantization puts the block minimum at 0
    c[(b + 7) % 32] = 15;   // and its maximum at 15
    for (int l = 0; l < 16; ++l) blk[4 + l] = static_cast<uint8_t>(c[l] | (c[l + 16] << 4));
  }
  std::vector<float> w(kBlocks * 32);
  ASSERT_TRUE(DequantizeGgml(GgmlType::kQ4_1, blocks.data(), blocks.size(), w.size(), w.data()).ok());
  auto q = QuantizeW4(w.data(), 2, kBlocks * 16, W4Options{});  // two rows of 32 blocks each
  ASSERT_TRUE(q.ok());
  std::vector<float> deq(w.size());
  DequantizeW4Rows(q->view(), 0, 2, deq.data());
  for (size_t i = 0; i < w.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / (kBlocks * 16), c = static_cast<int64_t>(i) % (kBlocks * 16);
    EXPECT_EQ(UnpackUint4(q->codes.data() + r * q->row_bytes(), c), codes[i]) << i;
    EXPECT_LE(std::fabs(deq[i] - w[i]), 2 * std::numeric_limits<float>::epsilon() * std::fabs(w[i]) + 1e-30f) << i;
  }
  EXPECT_GT(SqnrDb(w, deq), 120.0);  // symmetric int4 gets ~20 dB here
}

// On weights that were never 4-bit, the asymmetric grid (16 levels over [min, max]) still beats the
// symmetric one (15 levels over an OCTAV-clipped [-c, c]): docs/quantization.md, stories260K ~1.5 dB.
TEST(W4, AsymmetricBeatsSymmetricOnGaussianWeights) {
  std::mt19937 rng(12);
  std::normal_distribution<float> g;
  const int64_t n = 64, k = 256;
  std::vector<float> w(n * k);
  for (float& v : w) v = g(rng);
  auto sqnr = [&](W4Grid grid) {
    const W4Matrix q = *QuantizeW4(w.data(), n, k, W4Options{.grid = grid});
    std::vector<float> deq(w.size());
    DequantizeW4Rows(q.view(), 0, n, deq.data());
    return SqnrDb(w, deq);
  };
  const double asym = sqnr(W4Grid::kAsymmetric), sym = sqnr(W4Grid::kSymmetric);
  std::printf("w4 SQNR on N(0, 1), vectors of 32: asymmetric %.2f dB, symmetric (OCTAV) %.2f dB\n", asym, sym);
  EXPECT_GT(asym, sym + 0.5);
  EXPECT_GT(sym, 15.0);
}

TEST(W4, GridNames) {
  EXPECT_STREQ(W4GridName(W4Grid::kAsymmetric), "asymmetric");
  EXPECT_STREQ(W4GridName(W4Grid::kSymmetric), "symmetric");
  EXPECT_EQ(*ParseW4Grid("symmetric"), W4Grid::kSymmetric);
  EXPECT_EQ(*ParseW4Grid("asymmetric"), W4Grid::kAsymmetric);
  EXPECT_THAT(ParseW4Grid("asym"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("asymmetric or symmetric")));
}

TEST(W4, ValidateRejectsBadBuffers) {
  const std::vector<float> w(64, 1.0f);
  W4Matrix q = *QuantizeW4(w.data(), 2, 32, W4Options{.grid = W4Grid::kSymmetric});
  W4Matrix bad = q;
  bad.codes.pop_back();
  EXPECT_THAT(ValidateW4(bad, "f.safetensors"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f.safetensors: w4 codes")));
  bad = q;
  bad.scales[1] = -1;
  EXPECT_THAT(ValidateW4(bad, "f"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative or not finite")));
  bad = q;
  bad.codes[3] = 0x88;
  EXPECT_THAT(ValidateW4(bad, "f"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("code -8")));
  EXPECT_THAT(QuantizeW4(w.data(), 0, 32, W4Options{}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(QuantizeW4(w.data(), 2, 32, W4Options{.vector_size = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vector size")));
  // The asymmetric grid: any nibble is a code; the mins must match the scales and be finite.
  W4Matrix a = *QuantizeW4(w.data(), 2, 32, W4Options{});
  a.codes[3] = 0x88;
  EXPECT_TRUE(ValidateW4(a, "f").ok());
  bad = a;
  bad.mins.pop_back();
  EXPECT_THAT(ValidateW4(bad, "f"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("w4 mins hold 1")));
  bad = a;
  bad.mins[0] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(ValidateW4(bad, "f"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("minimum inf is not finite")));
}

}  // namespace
}  // namespace qrag::quant
