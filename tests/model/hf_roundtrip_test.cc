// stories260K re-saved as a Hugging Face Llama directory (with the RoPE row permutation HF checkpoints
// carry) must generate exactly what the llama2.c file generates, through the HF loader.
#include <filesystem>

#include "server/model/checkpoint_writer.h"
#include "server/model/hf_loader.h"
#include "server/model/random_model.h"
#include "tests/model/stories_fixture.h"

namespace qrag::model {
namespace {

using backend::CpuBackend;
using backend::CpuBackendOptions;
using ::qrag::testing::MaxRowRelativeError;
using ::qrag::testing::ReadFile;
using ::qrag::testing::ReadIds;
using ::qrag::testing::TeacherForcedLogits;
using ::qrag::testing::TempDir;

absl::StatusOr<std::string> GreedyText(const LoadedModel& m, const Tokenizer& tok, int n) {
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(m, &cpu, {});
  if (!t.ok()) return t.status();
  auto g = engine::Generator::Create(t->get(), &tok, {});
  if (!g.ok()) return g.status();
  engine::GenerateRequest r;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  auto result = (*g)->Generate(r, nullptr);
  if (!result.ok()) return result.status();
  return result->text;
}

class HfRoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(HfRoundTrip, Stories260KGeneratesIdenticalText) {
  QRAG_REQUIRE_SHARED_PATH(model_path, "models/stories260K/stories260K.bin");
  QRAG_REQUIRE_SHARED_PATH(tok_model, "models/stories260K/tok512.model");
  QRAG_REQUIRE_SHARED_PATH(gold_path, "models/stories260K/expected/greedy_t0.0_n200.txt");
  auto original = LoadCheckpoint(model_path);
  ASSERT_TRUE(original.ok()) << original.status();

  TempDir dir;
  HfWriteOptions o;
  o.shards = GetParam();
  ASSERT_TRUE(WriteHfCheckpoint(*original, dir.path(), o).ok());
  std::filesystem::copy_file(tok_model, dir.Join("tokenizer.model"));

  auto hf = LoadCheckpoint(dir.path());
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ(hf->config.rope_style, RopeStyle::kRotateHalf);
  EXPECT_TRUE(hf->config.tie_embeddings);
  // The q projection really was permuted: HF layout differs from the llama2.c one.
  auto wq_hf = (*hf->Get("model.layers.0.self_attn.q_proj.weight", {64, 64}))->ToFloatVector();
  auto wq_orig = (*original->Get("model.layers.0.self_attn.q_proj.weight", {64, 64}))->ToFloatVector();
  EXPECT_NE(wq_hf, wq_orig);

  auto tok_path = FindTokenizerFor(dir.path(), hf->config.vocab_size);
  ASSERT_TRUE(tok_path.ok()) << tok_path.status();
  auto tok = LoadTokenizer(*tok_path, hf->config.vocab_size);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto text = GreedyText(*hf, **tok, 200);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, ReadFile(gold_path));
}

INSTANTIATE_TEST_SUITE_P(Shards, HfRoundTrip, ::testing::Values(1, 3),
                         [](const auto& info) { return "Shards" + std::to_string(info.param); });

// Half-precision HF checkpoints load (converted exactly to fp32) and stay close to the fp32 model.
TEST(HfRoundTripDtypes, Bf16AndF16CheckpointsTrackFp32) {
  ModelConfig c = *NamedModelShape("tiny-gqa");
  auto model = MakeRandomModel(c, 21);
  ASSERT_TRUE(model.ok());
  std::vector<int32_t> seq;
  for (int i = 0; i < 24; ++i) seq.push_back((i * 53 + 1) % 300);
  CpuBackend cpu(CpuBackendOptions{});
  auto base = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(base.ok());
  auto base_logits = TeacherForcedLogits(**base, seq, 24);
  ASSERT_TRUE(base_logits.ok());
  for (HostDType dtype : {HostDType::kF32, HostDType::kF16, HostDType::kBF16}) {
    TempDir dir;
    HfWriteOptions o;
    o.dtype = dtype;
    ASSERT_TRUE(WriteHfCheckpoint(*model, dir.path(), o).ok());
    auto hf = LoadHfCheckpoint(dir.path());
    ASSERT_TRUE(hf.ok()) << hf.status();
    EXPECT_EQ(hf->tensors.at("model.norm.weight").dtype, dtype);
    auto t = Transformer::Create(*hf, &cpu, {});
    ASSERT_TRUE(t.ok()) << t.status();
    auto logits = TeacherForcedLogits(**t, seq, 24);
    ASSERT_TRUE(logits.ok());
    const double bound = dtype == HostDType::kF32 ? 1e-6 : dtype == HostDType::kF16 ? 5e-3 : 5e-2;
    EXPECT_LE(MaxRowRelativeError(*logits, *base_logits, 300), bound) << HostDTypeName(dtype);
  }
}

}  // namespace
}  // namespace qrag::model
