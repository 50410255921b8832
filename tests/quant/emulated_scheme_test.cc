// The emulated weight schemes (quant/emulated_scheme.h) the quantization report and bench/rag_bench share:
// each equals the toolkit function it names, and an unknown name is INVALID_ARGUMENT listing the choices.
#include "server/quant/emulated_scheme.h"

#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/quant/group_quant.h"
#include "server/quant/log_format.h"
#include "server/quant/pruning.h"
#include "server/quant/scalar_format.h"

namespace qrag::quant {
namespace {

std::vector<float> RandomWeights(int64_t rows, int64_t cols) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = d(rng);
  return w;
}

TEST(EmulatedWeightScheme, Log43_EqualsPerChannelLogQuantization) {
  const int64_t rows = 7, cols = 40;
  std::vector<float> w = RandomWeights(rows, cols);
  GroupQuantOptions o;
  o.format = ScalarFormat::Log(kLog43);
  o.granularity = Granularity::kChannel;
  o.clip.method = ClipMethod::kMax;
  const auto want = GroupQuantize(w.data(), rows, cols, o);
  ASSERT_TRUE(want.ok());
  auto t = EmulatedWeightScheme("log4.3");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)(&w, rows, cols).ok());
  EXPECT_EQ(w, want->dequantized);
  // Log 4.3 rounds: the transform changed the values.
  EXPECT_NE(w, RandomWeights(rows, cols));
}

TEST(EmulatedWeightScheme, TwoOfFour_PrunesAlongTheReduction) {
  const int64_t rows = 5, cols = 36;
  std::vector<float> w = RandomWeights(rows, cols), want = w;
  Prune2Of4(want.data(), rows, cols);
  auto t = EmulatedWeightScheme("2:4");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*t)(&w, rows, cols).ok());
  EXPECT_EQ(w, want);
  EXPECT_TRUE(Is2Of4Sparse(w.data(), rows, cols));
  int64_t zeros = 0;
  for (float v : w) zeros += v == 0.0f;
  EXPECT_EQ(zeros, rows * cols / 2);
}

TEST(EmulatedWeightScheme, UnknownName_InvalidArgumentListingTheChoices) {
  for (const char* name : {"", "log4", "fp8", "2:8", "LOG4.3"}) {
    auto t = EmulatedWeightScheme(name);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr("log4.3, 2:4")) << name;
  }
}

TEST(EmulatedWeightScheme, Log43_BadShape_ReturnsTheToolkitError) {
  auto t = EmulatedWeightScheme("log4.3");
  ASSERT_TRUE(t.ok());
  std::vector<float> w;
  EXPECT_EQ((*t)(&w, 0, 0).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qrag::quant
