// The decoder against llama2.c's gold outputs for the real stories260K checkpoint, and consistency checks
// (batching, paging, chunked prefill) on random-weight models.
#include "server/model/transformer.h"

#include <cmath>
#include <optional>

#include "server/model/random_model.h"
#include "tests/model/stories_fixture.h"

namespace qrag::model {
namespace {

using backend::CpuBackend;
using backend::CpuBackendOptions;
using backend::Precision;
using ::qrag::testing::MaxRowRelativeError;
using ::qrag::testing::ReadFile;
using ::qrag::testing::ReadFloats;
using ::qrag::testing::ReadIds;
using ::qrag::testing::TeacherForcedLogits;
using ::testing::HasSubstr;

constexpr char kPrompt[] = "Lily and Ben went to the park. They saw a big red ball.";

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_SHARED_PATH(model_path, "models/stories260K/stories260K.bin");
    QRAG_REQUIRE_SHARED_PATH(tok_path, "models/stories260K/tok512.bin");
    QRAG_REQUIRE_SHARED_PATH(expected, "models/stories260K/expected");
    expected_ = expected;
    ::qrag::testing::LoadStories260K(model_path, tok_path, &model_, &tokenizer_);
    if (HasFatalFailure()) return;
  }

  std::unique_ptr<Transformer> Make(CpuBackend& cpu, Precision p,
                                    std::optional<Precision> classifier = std::nullopt) {
    TransformerOptions o;
    o.precision = p;
    o.classifier_precision = classifier;
    auto t = Transformer::Create(*model_, &cpu, o);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  absl::StatusOr<std::string> Generate(Transformer& t, const std::string& prompt, int n, float temperature,
                                       float top_p, uint64_t seed) {
    auto g = engine::Generator::Create(&t, tokenizer_.get(), {});
    if (!g.ok()) return g.status();
    engine::GenerateRequest r;
    r.prompt = prompt;
    r.max_tokens = n;
    r.sampling.temperature = temperature;
    r.sampling.top_p = top_p;
    r.sampling.seed = seed;
    std::string streamed;
    auto result = (*g)->Generate(r, [&](std::string_view s) { streamed += s; });
    if (!result.ok()) return result.status();
    EXPECT_EQ(streamed, result->text);
    return result->text;
  }

  std::string Gold(const std::string& name) { return ReadFile(expected_ + "/" + name); }

  std::string expected_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

std::string StripFinalNewline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

class Stories260KBackends : public Stories260K, public ::testing::WithParamInterface<bool> {};

TEST_P(Stories260KBackends, Fp32LogitsMatchGold_Unprompted) {
  CpuBackend cpu(CpuBackendOptions{.reference = GetParam()});
  auto t = Make(cpu, Precision::kF32);
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  ASSERT_EQ(seq.size(), 201u);
  seq.pop_back();  // logits are given for the 200 inputs
  const std::vector<float> gold = ReadFloats(expected_ + "/greedy_t0.0_n200.logits.f32");
  ASSERT_EQ(gold.size(), 200u * 512);
  for (int chunk : {1, 7, 200}) {  // decode steps, uneven prefill chunks, one prefill
    auto logits = TeacherForcedLogits(*t, seq, chunk);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_LE(MaxRowRelativeError(*logits, gold, 512), 1e-4) << "chunk " << chunk;
    EXPECT_NEAR((*logits)[403], 17.023516f, 1e-3f);  // position 0 top logit, from SOURCES.md
  }
}

TEST_P(Stories260KBackends, Fp32LogitsMatchGold_Prompted) {
  CpuBackend cpu(CpuBackendOptions{.reference = GetParam()});
  auto t = Make(cpu, Precision::kF32);
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> seq = ReadIds(expected_ + "/prompted_greedy_n128.tokens.txt", 1);
  const std::vector<float> gold = ReadFloats(expected_ + "/prompted_greedy_n128.logits.f32");
  ASSERT_EQ(gold.size(), 128u * 512);
  seq.resize(128);
  auto logits = TeacherForcedLogits(*t, seq, 32);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(MaxRowRelativeError(*logits, gold, 512), 1e-4);
}

TEST_P(Stories260KBackends, GreedyTextEqualsGold) {
  CpuBackend cpu(CpuBackendOptions{.reference = GetParam()});
  auto t = Make(cpu, Precision::kF32);
  ASSERT_NE(t, nullptr);
  auto text200 = Generate(*t, "", 200, 0.0f, 0.9f, 1);
  ASSERT_TRUE(text200.ok()) << text200.status();
  EXPECT_EQ(*text200, Gold("greedy_t0.0_n200.txt"));
  auto text256 = Generate(*t, "", 256, 0.0f, 0.9f, 1);
  ASSERT_TRUE(text256.ok()) << text256.status();
  EXPECT_EQ(*text256, StripFinalNewline(Gold("greedy_t0.0_n256.stdout.txt")));
}

TEST_P(Stories260KBackends, PromptedGreedyTextEqualsGold) {
  CpuBackend cpu(CpuBackendOptions{.reference = GetParam()});
  auto t = Make(cpu, Precision::kF32);
  ASSERT_NE(t, nullptr);
  // run.c -n 128 counts positions: 22 prompt ids, so 128 - 21 = 107 generated tokens. Its stdout echoes
  // the prompt, then the completion, then "\n".
  const std::vector<int32_t> prompt_ids = ReadIds(expected_ + "/prompted_greedy_n128.tokens.txt", 0);
  auto text = Generate(*t, kPrompt, 128 - (static_cast<int>(prompt_ids.size()) - 1), 0.0f, 0.9f, 1);
  ASSERT_TRUE(text.ok()) << text.status();
  const std::string gold = StripFinalNewline(Gold("prompted_greedy_n128.stdout.txt"));
  ASSERT_EQ(gold.substr(0, std::strlen(kPrompt)), kPrompt);
  EXPECT_EQ(*text, gold.substr(std::strlen(kPrompt)));
}

TEST_P(Stories260KBackends, TopPSampledTextEqualsGold) {
  CpuBackend cpu(CpuBackendOptions{.reference = GetParam()});
  auto t = Make(cpu, Precision::kF32);
  ASSERT_NE(t, nullptr);
  auto text = Generate(*t, "", 256, 1.0f, 0.9f, 133742);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, StripFinalNewline(Gold("sample_t1.0_p0.9_s133742_n256.stdout.txt")));
}

INSTANTIATE_TEST_SUITE_P(Cpu, Stories260KBackends, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Reference" : "Fast"; });

// Quality of the low-precision schemes against the fp32 gold logits. The floors were set before the first
// measurement and hold with margin (measured: bf16 top-1 0.995 / KL 5e-5, fp8 0.955 / 1e-2, int8
// 0.98 / 9e-4; docs/quantization.md); a kernel or rounding bug moves these by far more. w4's floor was set
// after its first measurement (top-1 0.84, KL 0.13 vs our fp32: docs/quantization-report.md section 4): 4-bit
// weights cost this much on a 64-wide model.
struct QuantCase {
  Precision precision;
  double min_top1;
  double max_mean_kl;
};

class Stories260KQuant : public Stories260K, public ::testing::WithParamInterface<QuantCase> {};

TEST_P(Stories260KQuant, Top1AgreementAndKlVsFp32) {
  const QuantCase qc = GetParam();
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Make(cpu, qc.precision);
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  seq.pop_back();
  const std::vector<float> gold = ReadFloats(expected_ + "/greedy_t0.0_n200.logits.f32");
  auto logits = TeacherForcedLogits(*t, seq, 64);
  ASSERT_TRUE(logits.ok()) << logits.status();
  auto cmp = engine::CompareLogits(gold, *logits, 512);
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  const double top1 = cmp->top1_agreement, kl = cmp->mean_kl;
  RecordProperty("top1", std::to_string(top1));
  RecordProperty("mean_kl", std::to_string(kl));
  std::printf("%s: top-1 agreement %.4f, mean KL %.6f nats\n", backend::PrecisionName(qc.precision), top1, kl);
  EXPECT_GE(top1, qc.min_top1);
  EXPECT_LE(kl, qc.max_mean_kl);
  EXPECT_GT(kl, 0.0);  // a quantized model that equals fp32 exactly would mean quantization did not happen
}

INSTANTIATE_TEST_SUITE_P(Schemes, Stories260KQuant,
                         ::testing::Values(QuantCase{Precision::kBF16, 0.97, 0.002},
                                           QuantCase{Precision::kFP8, 0.90, 0.05},
                                           QuantCase{Precision::kInt8, 0.95, 0.01},
                                           QuantCase{Precision::kW4, 0.85, 0.1}),
                         [](const auto& info) { return std::string(backend::PrecisionName(info.param.precision)); });

// Fast kernels agree with the reference kernels in every precision, position by position.
class Stories260KFastVsReference : public Stories260K, public ::testing::WithParamInterface<Precision> {};

TEST_P(Stories260KFastVsReference, LogitsAgree) {
  CpuBackend fast(CpuBackendOptions{}), ref(CpuBackendOptions{.reference = true});
  // w4 with a w4 classifier too (its default, int8, is the int8 case's): only the w4 kernels are compared.
  auto tf = Make(fast, GetParam(), GetParam());
  auto tr = Make(ref, GetParam(), GetParam());
  ASSERT_NE(tf, nullptr);
  ASSERT_NE(tr, nullptr);
  std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  seq.resize(64);
  auto a = TeacherForcedLogits(*tf, seq, 64);
  auto b = TeacherForcedLogits(*tr, seq, 64);
  ASSERT_TRUE(a.ok() && b.ok());
  // The kernels differ only in fp32 summation order (fp32 agrees to 1e-5). In the low formats such a
  // difference can flip the rounding of an activation element by one step of the format (bf16: 2^-8
  // relative; E4M3: 2^-4; int8: amax/127), which then propagates; the bounds allow a few such steps.
  // w4 has fp32 activations and identical dequantized weights in both paths: only the summation order differs.
  const Precision p = GetParam();
  const double bound = p == Precision::kF32 || p == Precision::kW4 ? 1e-5 : p == Precision::kBF16 ? 1e-2 : 3e-2;
  EXPECT_LE(MaxRowRelativeError(*a, *b, 512), bound);
}

INSTANTIATE_TEST_SUITE_P(Schemes, Stories260KFastVsReference,
                         ::testing::Values(Precision::kF32, Precision::kBF16, Precision::kFP8, Precision::kInt8,
                                           Precision::kW4),
                         [](const auto& info) { return std::string(backend::PrecisionName(info.param)); });

// ---- random-weight models -------------------------------------------------------------------------

TEST(TransformerRandom, ChunkedPrefillEqualsTokenByToken_GqaRotateHalf) {
  auto model = MakeRandomModel(*NamedModelShape("tiny-gqa"), 11);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{.reference = true});
  auto t = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<int32_t> seq;
  for (int i = 0; i < 40; ++i) seq.push_back((i * 37 + 5) % 300);
  auto one = TeacherForcedLogits(**t, seq, 1, 4);
  auto chunked = TeacherForcedLogits(**t, seq, 13, 16);
  ASSERT_TRUE(one.ok() && chunked.ok());
  EXPECT_LE(MaxRowRelativeError(*chunked, *one, 300), 1e-6);
  for (float v : *one) ASSERT_TRUE(std::isfinite(v));
}

TEST(TransformerRandom, TwoSequencesInOneBatchEqualSeparateRuns) {
  ModelConfig c = *NamedModelShape("tiny-gqa");
  c.architecture = "qwen2";
  c.qkv_bias = true;
  auto model = MakeRandomModel(c, 5);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<int32_t> a = {1, 17, 33, 90, 4, 250, 8}, b = {1, 299, 2, 45};
  auto la = TeacherForcedLogits(**t, a, 64, 4);
  auto lb = TeacherForcedLogits(**t, b, 64, 4);
  ASSERT_TRUE(la.ok() && lb.ok());

  // Both sequences in one flattened batch, with interleaved physical blocks.
  KvCacheOptions kv{.num_blocks = 8, .block_size = 4};
  auto cache = KvCache::Create(&cpu, c, kv);
  ASSERT_TRUE(cache.ok());
  const std::vector<int32_t> table_a = {6, 1}, table_b = {3};
  const backend::AttentionBatch::Sequence seqs[] = {{table_a}, {table_b}};
  std::vector<int32_t> tokens, pos, which, rows;
  for (size_t i = 0; i < a.size(); ++i) tokens.push_back(a[i]), pos.push_back(i), which.push_back(0);
  for (size_t i = 0; i < b.size(); ++i) tokens.push_back(b[i]), pos.push_back(i), which.push_back(1);
  for (size_t i = 0; i < tokens.size(); ++i) rows.push_back(i);
  backend::AttentionBatch batch;
  batch.positions = pos;
  batch.token_seq = which;
  batch.sequences = seqs;
  batch.block_size = 4;
  std::vector<float> logits(tokens.size() * 300);
  ASSERT_TRUE((*t)->Forward(tokens, batch, rows, *cache, logits.data()).ok());
  std::vector<float> got_a(logits.begin(), logits.begin() + a.size() * 300);
  std::vector<float> got_b(logits.begin() + a.size() * 300, logits.end());
  EXPECT_LE(MaxRowRelativeError(got_a, *la, 300), 1e-5);
  EXPECT_LE(MaxRowRelativeError(got_b, *lb, 300), 1e-5);
}

TEST(TransformerRandom, SlidingWindowLimitsAttention) {
  ModelConfig c = *NamedModelShape("tiny-gqa");
  auto model = MakeRandomModel(c, 9);
  ASSERT_TRUE(model.ok());
  c.sliding_window = 4;
  LoadedModel windowed = *model;
  windowed.config = c;
  CpuBackend cpu(CpuBackendOptions{.reference = true});
  auto full = Transformer::Create(*model, &cpu, {});
  auto win = Transformer::Create(windowed, &cpu, {});
  ASSERT_TRUE(full.ok() && win.ok());
  std::vector<int32_t> seq = {1, 5, 9, 200, 31, 7, 77, 150};
  auto lf = TeacherForcedLogits(**full, seq, 8);
  auto lw = TeacherForcedLogits(**win, seq, 8);
  ASSERT_TRUE(lf.ok() && lw.ok());
  // Identical while the window covers everything (positions 0..3), different after.
  std::vector<float> f4(lf->begin(), lf->begin() + 4 * 300), w4(lw->begin(), lw->begin() + 4 * 300);
  EXPECT_LE(MaxRowRelativeError(w4, f4, 300), 1e-6);
  std::vector<float> fl(lf->end() - 300, lf->end()), wl(lw->end() - 300, lw->end());
  EXPECT_GT(MaxRowRelativeError(wl, fl, 300), 1e-3);
}

TEST(TransformerErrors, MissingTensorNamesIt) {
  auto model = MakeRandomModel(*NamedModelShape("tiny-gqa"), 1);
  ASSERT_TRUE(model.ok());
  model->tensors.erase("model.layers.1.mlp.up_proj.weight");
  CpuBackend cpu(CpuBackendOptions{});
  EXPECT_THAT(Transformer::Create(*model, &cpu, {}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.layers.1.mlp.up_proj.weight")));
}

TEST(TransformerErrors, WrongShapeNamesTensorAndShapes) {
  auto model = MakeRandomModel(*NamedModelShape("tiny-gqa"), 1);
  ASSERT_TRUE(model.ok());
  model->tensors["model.norm.weight"].shape = {47};
  CpuBackend cpu(CpuBackendOptions{});
  EXPECT_THAT(Transformer::Create(*model, &cpu, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.norm.weight")));
}

TEST(TransformerErrors, BadTokenAndPosition) {
  auto model = MakeRandomModel(*NamedModelShape("tiny-gqa"), 1);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(TeacherForcedLogits(**t, {1, 300}, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token id 300")));
  std::vector<int32_t> long_seq(129, 1);  // context is 128
  EXPECT_THAT(TeacherForcedLogits(**t, long_seq, 64).status(),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("context length 128")));
}

// --quant w4 keeps the classifier at 8 bits (DefaultClassifierPrecision); classifier_precision overrides it.
TEST(TransformerClassifierPrecision, W4DefaultsToInt8ClassifierAndCanBeOverridden) {
  EXPECT_EQ(DefaultClassifierPrecision(Precision::kW4), Precision::kInt8);
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kFP8, Precision::kInt8}) {
    EXPECT_EQ(DefaultClassifierPrecision(p), p);
  }
  const ModelConfig c = *NamedModelShape("tiny-gqa");
  auto model = MakeRandomModel(c, 1);
  ASSERT_TRUE(model.ok());
  const std::vector<int32_t> tokens = {1, 5, 9, 17};
  const int64_t classifier_ops = 2 * static_cast<int64_t>(tokens.size()) * c.vocab_size * c.dim;
  for (const std::optional<Precision> classifier : {std::optional<Precision>(), std::optional(Precision::kW4)}) {
    CpuBackend cpu(CpuBackendOptions{});
    auto t = Transformer::Create(*model, &cpu, {.precision = Precision::kW4, .classifier_precision = classifier});
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE(TeacherForcedLogits(**t, tokens, 4).ok());
    const auto& ops = (*t)->ops().by_precision;
    const auto at = [&](Precision p) { return ops[static_cast<int>(p)]; };
    if (classifier.has_value()) {
      EXPECT_EQ(at(Precision::kInt8), 0);
    } else {
      EXPECT_EQ(at(Precision::kInt8), classifier_ops);
    }
    EXPECT_GT(at(Precision::kW4), 0);
  }
}

TEST(RopeFrequencies, Llama3ScalingMatchesTransformers) {
  ModelConfig c = *NamedModelShape("llama-3.2-1b");
  std::vector<float> f = RopeInverseFrequencies(c);
  ASSERT_EQ(f.size(), 32u);
  // Highest frequency unchanged; lowest divided by the factor (32).
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  const float lowest = 1.0f / std::pow(500000.0f, 62.0f / 64.0f);
  EXPECT_NEAR(f[31], lowest / 32.0f, 1e-12f);
  for (size_t i = 1; i < f.size(); ++i) EXPECT_LT(f[i], f[i - 1]);
}

}  // namespace
}  // namespace qrag::model
