// stories260K on the CUDA backend (ctest labels `gpu` and `shared`; skipped without a GPU or the data):
// fp32 greedy text equals llama2.c's gold file; in every precision, teacher-forced top-1 agreement with the
// CPU backend in the same precision (same emulated formats) is at least 99% of positions.
#include <cstdio>

#include "server/backend/cuda/cuda_backend.h"
#include "tests/backend/gpu_test_util.h"
#include "tests/model/stories_fixture.h"

namespace qrag::model {
namespace {

using backend::CpuBackend;
using backend::CpuBackendOptions;
using backend::CudaBackend;
using backend::CudaBackendOptions;
using backend::Precision;
using ::qrag::testing::ReadFile;
using ::qrag::testing::ReadIds;
using ::qrag::testing::TeacherForcedLogits;

class CudaStories260K : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_GPU();
    QRAG_REQUIRE_SHARED_PATH(model_path, "models/stories260K/stories260K.bin");
    QRAG_REQUIRE_SHARED_PATH(tok_path, "models/stories260K/tok512.bin");
    QRAG_REQUIRE_SHARED_PATH(expected, "models/stories260K/expected");
    expected_ = expected;
    ::qrag::testing::LoadStories260K(model_path, tok_path, &model_, &tokenizer_);
    if (HasFatalFailure()) return;
    auto g = CudaBackend::Create(CudaBackendOptions{});
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = std::move(*g);
  }

  std::unique_ptr<Transformer> Make(backend::Backend* b, Precision p) {
    TransformerOptions o;
    o.precision = p;
    auto t = Transformer::Create(*model_, b, o);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  std::string expected_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<CudaBackend> gpu_;
};

TEST_P(CudaStories260K, GreedyText) {
  auto t = Make(gpu_.get(), GetParam());
  ASSERT_NE(t, nullptr);
  auto g = engine::Generator::Create(t.get(), tokenizer_.get(), {});
  ASSERT_TRUE(g.ok()) << g.status();
  engine::GenerateRequest r;
  r.max_tokens = 200;
  r.sampling.temperature = 0.0f;
  auto result = (*g)->Generate(r, [](std::string_view) {});
  ASSERT_TRUE(result.ok()) << result.status();
  std::string gold = ReadFile(expected_ + "/greedy_t0.0_n200.txt");
  if (!gold.empty() && gold.back() == '\n') gold.pop_back();
  std::printf("%s greedy on GPU: %s\n", backend::PrecisionName(GetParam()), result->text.c_str());
  if (GetParam() == Precision::kF32) {
    EXPECT_EQ(result->text, gold);
  } else {
    // The low formats are not expected to reproduce fp32's text; they must generate the full length.
    EXPECT_EQ(result->output_ids.size(), 200u);
  }
}

TEST_P(CudaStories260K, Top1AgreementWithCpuSamePrecision) {
  CpuBackend cpu(CpuBackendOptions{});
  auto tc = Make(&cpu, GetParam());
  auto tg = Make(gpu_.get(), GetParam());
  ASSERT_NE(tc, nullptr);
  ASSERT_NE(tg, nullptr);
  std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  seq.pop_back();
  // Chunks of 64 (prefill path) and of 1 (decode path).
  for (int chunk : {64, 1}) {
    auto a = TeacherForcedLogits(*tc, seq, chunk);
    auto b = TeacherForcedLogits(*tg, seq, chunk);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    auto cmp = engine::CompareLogits(*a, *b, 512);
    ASSERT_TRUE(cmp.ok()) << cmp.status();
    std::printf("%s chunk %d: GPU vs CPU top-1 agreement %.4f, max row relative error %.3g\n",
                backend::PrecisionName(GetParam()), chunk, cmp->top1_agreement, cmp->max_row_relative_error);
    RecordProperty(absl::StrCat("top1_chunk", chunk), std::to_string(cmp->top1_agreement));
    EXPECT_GE(cmp->top1_agreement, 0.99);
    if (GetParam() == Precision::kF32) EXPECT_LE(cmp->max_row_relative_error, 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, CudaStories260K,
                         ::testing::Values(Precision::kF32, Precision::kBF16, Precision::kFP8, Precision::kInt8),
                         [](const auto& info) { return std::string(backend::PrecisionName(info.param)); });

}  // namespace
}  // namespace qrag::model
