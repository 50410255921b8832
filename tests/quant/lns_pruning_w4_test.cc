// LNS factored dot product == direct LNS sum; 2:4 pruning pattern; w4 quantization and validation.
#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/quant/clipping.h"
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

TEST(W4, QuantizeOctav_Vector32_CodesScalesAndRaggedLastVector) {
  std::mt19937 rng(8);
  std::normal_distribution<float> g;
  const int64_t n = 5, k = 70;  // vectors of 32, 32, 6
  std::vector<float> w(n * k);
  for (float& v : w) v = g(rng);
  auto q = QuantizeW4(w.data(), n, k, W4Options{});
  ASSERT_TRUE(q.ok());
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

TEST(W4, ValidateRejectsBadBuffers) {
  const std::vector<float> w(64, 1.0f);
  W4Matrix q = *QuantizeW4(w.data(), 2, 32, W4Options{});
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
}

}  // namespace
}  // namespace qrag::quant
