// The host-side logic of the cuBLASLt GEMM plans, which needs no GPU: shape and format validation (the
// errors a caller sees before anything reaches cuBLASLt) and the plan-cache key.
#include "kernels/gemm_plan.h"

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "tests/test_util.h"

namespace qrag::kernels {
namespace {

using ::testing::HasSubstr;

GemmDesc Desc(GemmInput in, GemmOutput out, int64_t m, int64_t n, int64_t k) {
  GemmDesc d;
  d.input = in;
  d.output = out;
  d.m = m;
  d.n = n;
  d.k = k;
  return d;
}

TEST(ValidateGemmDesc, AcceptsServedCombinations) {
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kF32, GemmOutput::kF32, 1, 7, 3)).ok());  // fp32: any shape
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kBF16, GemmOutput::kF32, 5, 64, 32)).ok());
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kBF16, GemmOutput::kBF16, 5, 64, 32)).ok());
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kFP8, GemmOutput::kF32, 1, 4096, 4096)).ok());
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kFP8, GemmOutput::kBF16, 2048, 128256, 4096)).ok());
  EXPECT_TRUE(ValidateGemmDesc(Desc(GemmInput::kInt8, GemmOutput::kInt32, 3, 16, 16)).ok());
  GemmDesc d = Desc(GemmInput::kFP8, GemmOutput::kF32, 1, 16, 16);
  for (GemmScaling s : {GemmScaling::kPerTensor, GemmScaling::kOuterVector}) {
    d.scaling = s;
    EXPECT_TRUE(ValidateGemmDesc(d).ok()) << GemmDescString(d);
  }
  d.fast_accumulation = true;
  EXPECT_TRUE(ValidateGemmDesc(d).ok());
}

TEST(ValidateGemmDesc, RejectsEmptyAndHugeShapes) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{0, 16, 16}, {1, 0, 16}, {1, 16, 0}, {-1, 16, 16},
                         {int64_t{1} << 31, 16, 16}}) {
    absl::Status s = ValidateGemmDesc(Desc(GemmInput::kF32, GemmOutput::kF32, m, n, k));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << m << " " << n << " " << k;
    EXPECT_THAT(s.message(), HasSubstr("m, n and k must each be in [1, 2^31 - 1]"));
  }
}

TEST(ValidateGemmDesc, TensorCoreFormatsNeedMultiplesOf16) {
  for (GemmInput in : {GemmInput::kBF16, GemmInput::kFP8, GemmInput::kInt8}) {
    const GemmOutput out = in == GemmInput::kInt8 ? GemmOutput::kInt32 : GemmOutput::kF32;
    for (auto [n, k] : {std::pair<int64_t, int64_t>{172, 64}, {64, 172}, {8, 16}, {16, 8}}) {
      absl::Status s = ValidateGemmDesc(Desc(in, out, 1, n, k));
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << GemmInputName(in) << " n=" << n << " k=" << k;
      EXPECT_THAT(s.message(), HasSubstr("multiples of 16"));
      EXPECT_THAT(s.message(), HasSubstr("pad"));
    }
    EXPECT_TRUE(ValidateGemmDesc(Desc(in, out, 3, 176, 64)).ok());  // m is free
  }
}

TEST(ValidateGemmDesc, RejectsWrongOutputFormats) {
  absl::Status s = ValidateGemmDesc(Desc(GemmInput::kInt8, GemmOutput::kF32, 1, 16, 16));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("epilogue"));
  s = ValidateGemmDesc(Desc(GemmInput::kF32, GemmOutput::kBF16, 1, 16, 16));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = ValidateGemmDesc(Desc(GemmInput::kFP8, GemmOutput::kInt32, 1, 16, 16));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = ValidateGemmDesc(Desc(GemmInput::kBF16, GemmOutput::kInt32, 1, 16, 16));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateGemmDesc, ScalingAndFastAccumulationAreFp8Only) {
  GemmDesc d = Desc(GemmInput::kInt8, GemmOutput::kInt32, 1, 16, 16);
  d.scaling = GemmScaling::kOuterVector;
  EXPECT_EQ(ValidateGemmDesc(d).code(), absl::StatusCode::kUnimplemented);
  d = Desc(GemmInput::kBF16, GemmOutput::kF32, 1, 16, 16);
  d.scaling = GemmScaling::kPerTensor;
  EXPECT_EQ(ValidateGemmDesc(d).code(), absl::StatusCode::kUnimplemented);
  d = Desc(GemmInput::kBF16, GemmOutput::kF32, 1, 16, 16);
  d.fast_accumulation = true;
  EXPECT_EQ(ValidateGemmDesc(d).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GemmDescKey, EveryFieldDistinguishesPlans) {
  const GemmDesc base = Desc(GemmInput::kFP8, GemmOutput::kF32, 16, 4096, 4096);
  std::vector<GemmDesc> variants(8, base);
  variants[1].m = 17;
  variants[2].n = 4112;
  variants[3].k = 4112;
  variants[4].input = GemmInput::kBF16;
  variants[5].output = GemmOutput::kBF16;
  variants[6].scaling = GemmScaling::kOuterVector;
  variants[7].fast_accumulation = true;
  absl::flat_hash_set<GemmDesc> keys(variants.begin(), variants.end());
  EXPECT_EQ(keys.size(), variants.size());
  GemmDesc copy = base;
  EXPECT_TRUE(copy == base);
  EXPECT_EQ(absl::Hash<GemmDesc>{}(copy), absl::Hash<GemmDesc>{}(base));
  EXPECT_TRUE(keys.contains(copy));
}

TEST(GemmDescString, NamesFormatsScalingAndShape) {
  GemmDesc d = Desc(GemmInput::kFP8, GemmOutput::kBF16, 1, 4096, 14336);
  d.scaling = GemmScaling::kOuterVector;
  EXPECT_EQ(GemmDescString(d), "fp8xfp8->bf16 outer_vector m=1 n=4096 k=14336");
  EXPECT_EQ(GemmDescString(Desc(GemmInput::kInt8, GemmOutput::kInt32, 2, 16, 32)), "int8xint8->i32 none m=2 n=16 k=32");
}

}  // namespace
}  // namespace qrag::kernels
