// GGUF checkpoints -> LoadedModel (server/model/gguf_loader.h) on tiny models written byte by byte: the config
// from metadata, tied/untied classifiers, qwen2 biases, RoPE layouts and factors, and every refusal (unknown
// architecture, missing keys, unsupported features, unknown tensors). The real SmolLM2 forward against an
// independent numpy forward is in gguf_smollm2_test.cc.
#include "server/model/gguf_loader.h"

#include <cmath>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/model/transformer.h"
#include "tests/model/gguf_builder.h"
#include "tests/model/stories_fixture.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::Builder;
using ::qrag::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kDim = 8, kHidden = 16, kHeads = 2, kKv = 1, kVocab = 10;

std::vector<float> Values(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.7f * static_cast<float>(i) + scale);
  return v;
}

struct TinyOptions {
  std::string arch = "llama";
  std::set<std::string> skip_keys;
  std::function<void(Builder&)> extra_kv;
  std::function<void(Builder&)> extra_tensors;
  bool untied = false;
  bool biases = false;
};

// A 1-layer model: dim 8, 2 heads of 4, 1 kv head, FFN 16, vocab 10.
std::string TinyGguf(const TinyOptions& o) {
  Builder b;
  auto kv_u32 = [&](const std::string& key, uint32_t v) {
    if (!o.skip_keys.contains(key)) b.KvU32(key, v);
  };
  const std::string p = o.arch + ".";
  if (!o.skip_keys.contains("general.architecture")) b.KvString("general.architecture", o.arch);
  kv_u32(p + "embedding_length", kDim);
  kv_u32(p + "feed_forward_length", kHidden);
  kv_u32(p + "block_count", 1);
  kv_u32(p + "attention.head_count", kHeads);
  kv_u32(p + "attention.head_count_kv", kKv);
  kv_u32(p + "context_length", 32);
  kv_u32(p + "vocab_size", kVocab);
  if (!o.skip_keys.contains(p + "attention.layer_norm_rms_epsilon")) {
    b.KvF32(p + "attention.layer_norm_rms_epsilon", 1e-6f);
  }
  b.KvF32(p + "rope.freq_base", 500.0f);
  kv_u32("tokenizer.ggml.bos_token_id", 1);
  kv_u32("tokenizer.ggml.eos_token_id", 2);
  kv_u32("tokenizer.ggml.eot_token_id", 3);
  if (o.extra_kv) o.extra_kv(b);
  b.TensorF32("token_embd.weight", {kDim, kVocab}, Values(kDim * kVocab, 0.5f));
  b.TensorF32("output_norm.weight", {kDim}, Values(kDim, 1.0f));
  if (o.untied) b.TensorF32("output.weight", {kDim, kVocab}, Values(kDim * kVocab, 0.25f));
  b.TensorF32("blk.0.attn_norm.weight", {kDim}, Values(kDim, 1.1f));
  b.TensorF32("blk.0.ffn_norm.weight", {kDim}, Values(kDim, 0.9f));
  b.TensorF32("blk.0.attn_q.weight", {kDim, kDim}, Values(kDim * kDim, 0.3f));
  b.TensorF32("blk.0.attn_k.weight", {kDim, kKv * 4}, Values(kDim * 4, 0.31f));
  b.TensorF32("blk.0.attn_v.weight", {kDim, kKv * 4}, Values(kDim * 4, 0.32f));
  b.TensorF32("blk.0.attn_output.weight", {kDim, kDim}, Values(kDim * kDim, 0.33f));
  b.TensorF32("blk.0.ffn_gate.weight", {kDim, kHidden}, Values(kDim * kHidden, 0.34f));
  b.TensorF32("blk.0.ffn_up.weight", {kDim, kHidden}, Values(kDim * kHidden, 0.35f));
  b.TensorF32("blk.0.ffn_down.weight", {kHidden, kDim}, Values(kDim * kHidden, 0.36f));
  if (o.biases) {
    b.TensorF32("blk.0.attn_q.bias", {kDim}, Values(kDim, 0.1f));
    b.TensorF32("blk.0.attn_k.bias", {4}, Values(4, 0.2f));
    b.TensorF32("blk.0.attn_v.bias", {4}, Values(4, 0.3f));
  }
  if (o.extra_tensors) o.extra_tensors(b);
  return b.Build();
}

absl::StatusOr<LoadedModel> Load(const std::string& bytes, const std::string& name = "tiny.gguf") {
  static TempDir* dir = new TempDir();
  const std::string path = dir->Join(name);
  ::qrag::testing::WriteFile(path, bytes);
  return LoadCheckpoint(path);
}

TEST(GgufLoader, TinyLlama_ConfigTensorsAndForward) {
  auto m = Load(TinyGguf({}));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.dim, kDim);
  EXPECT_EQ(c.hidden_dim, kHidden);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.n_heads, kHeads);
  EXPECT_EQ(c.n_kv_heads, kKv);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, kVocab);
  EXPECT_EQ(c.max_seq_len, 32);
  EXPECT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.rope_theta, 500.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);  // llama.cpp's llama layout (gguf_loader.h)
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2, 3));
  EXPECT_EQ(m->tensors.size(), 11u);
  auto k = m->Get("model.layers.0.self_attn.k_proj.weight", {4, kDim});
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ((*k)->ToFloatVector(), Values(kDim * 4, 0.31f));
  EXPECT_TRUE(m->Get("model.layers.0.mlp.down_proj.weight", {kDim, kHidden}).ok());
  EXPECT_TRUE(m->Get("model.embed_tokens.weight", {kVocab, kDim}).ok());

  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = true});
  auto t = Transformer::Create(*m, &cpu, {});
  ASSERT_TRUE(t.ok()) << t.status();
  auto logits = ::qrag::testing::TeacherForcedLogits(**t, {1, 4, 7, 2}, 4);
  ASSERT_TRUE(logits.ok()) << logits.status();
  int nonzero = 0;
  for (float v : *logits) {
    ASSERT_TRUE(std::isfinite(v));
    nonzero += v != 0.0f;
  }
  EXPECT_GT(nonzero, 30);
}

TEST(GgufLoader, Qwen2_RotateHalfBiasesUntied) {
  auto m = Load(TinyGguf({.arch = "qwen2", .untied = true, .biases = true}));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config.architecture, "qwen2");
  EXPECT_EQ(m->config.rope_style, RopeStyle::kRotateHalf);
  EXPECT_TRUE(m->config.qkv_bias);
  EXPECT_FALSE(m->config.tie_embeddings);
  EXPECT_TRUE(m->Get("lm_head.weight", {kVocab, kDim}).ok());
  EXPECT_TRUE(m->Get("model.layers.0.self_attn.k_proj.bias", {4}).ok());
  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = true});
  EXPECT_TRUE(Transformer::Create(*m, &cpu, {}).ok());
}

TEST(GgufLoader, LlamaWithBiasesAndMagicSniffing) {
  auto m = Load(TinyGguf({.biases = true}), "model-without-suffix");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->config.qkv_bias);
}

TEST(GgufLoader, RopeScaling) {
  auto lin = Load(TinyGguf({.extra_kv = [](Builder& b) {
    b.KvString("llama.rope.scaling.type", "linear");
    b.KvF32("llama.rope.scaling.factor", 4.0f);
  }}));
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ(lin->config.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(lin->config.rope_scaling.factor, 4.0f);

  auto freqs = Load(TinyGguf({.extra_tensors = [](Builder& b) { b.TensorF32("rope_freqs.weight", {2}, {1.0f, 8.0f}); }}));
  ASSERT_TRUE(freqs.ok()) << freqs.status();
  EXPECT_EQ(freqs->config.rope_scaling.type, RopeScaling::Type::kFrequencyFactors);
  const std::vector<float> inv = RopeInverseFrequencies(freqs->config);
  ASSERT_EQ(inv.size(), 2u);
  EXPECT_EQ(inv[0], 1.0f);
  EXPECT_EQ(inv[1], (1.0f / std::pow(500.0f, 0.5f)) / 8.0f);

  auto yarn = Load(TinyGguf({.extra_kv = [](Builder& b) { b.KvString("llama.rope.scaling.type", "yarn"); }}));
  EXPECT_THAT(yarn.status(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'llama.rope.scaling.type' = 'yarn'")));
  auto no_factor = Load(TinyGguf({.extra_kv = [](Builder& b) { b.KvString("llama.rope.scaling.type", "linear"); }}));
  EXPECT_THAT(no_factor.status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'llama.rope.scaling.factor'")));
  auto bad_freqs = Load(TinyGguf({.extra_tensors = [](Builder& b) { b.TensorF32("rope_freqs.weight", {2}, {1.0f, 0.0f}); }}));
  EXPECT_THAT(bad_freqs.status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RoPE frequency factor 0")));
}

TEST(GgufLoader, VocabSizeFallbacksAndSpecialIds) {
  // Without <arch>.vocab_size: the token list's length, else token_embd's rows.
  auto from_tokens = Load(TinyGguf({.skip_keys = {"llama.vocab_size"}, .extra_kv = [](Builder& b) {
    b.KvStrings("tokenizer.ggml.tokens", std::vector<std::string>(kVocab, "t"));
  }}));
  ASSERT_TRUE(from_tokens.ok()) << from_tokens.status();
  EXPECT_EQ(from_tokens->config.vocab_size, kVocab);
  auto from_embd = Load(TinyGguf({.skip_keys = {"llama.vocab_size"}}));
  ASSERT_TRUE(from_embd.ok()) << from_embd.status();
  EXPECT_EQ(from_embd->config.vocab_size, kVocab);
  // eot equal to eos is listed once; an absent bos stays -1.
  auto same = Load(TinyGguf({.skip_keys = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eot_token_id"},
                             .extra_kv = [](Builder& b) { b.KvU32("tokenizer.ggml.eot_token_id", 2); }}));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->config.bos_token_id, -1);
  EXPECT_THAT(same->config.eos_token_ids, ElementsAre(2));
  // A vocab size the embedding does not have is caught when the model is built.
  auto wrong = Load(TinyGguf({.skip_keys = {"llama.vocab_size"},
                              .extra_kv = [](Builder& b) { b.KvU32("llama.vocab_size", 12); }}));
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = true});
  EXPECT_THAT(Transformer::Create(*wrong, &cpu, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.embed_tokens.weight")));
}

TEST(GgufLoader, Refusals) {
  EXPECT_THAT(Load(TinyGguf({.extra_kv = [](Builder& b) {
                               b.KvString("llama.rope.scaling.type", "linear");
                               b.KvF32("llama.rope.scaling.factor", 2.0f);
                             },
                             .extra_tensors = [](Builder& b) { b.TensorF32("rope_freqs.weight", {2}, {1, 2}); }}))
                  .status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'rope_freqs.weight' together with")));
  EXPECT_THAT(Load(TinyGguf({.skip_keys = {"llama.context_length"},
                             .extra_kv = [](Builder& b) { b.Kv("llama.context_length", 10, ::qrag::testing::U64(1ull << 40)); }}))
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'llama.context_length' = 1099511627776 is out of range")));
  EXPECT_THAT(Load(TinyGguf({.arch = "gpt2"})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("architecture 'gpt2' is not supported")));
  EXPECT_THAT(Load(TinyGguf({.skip_keys = {"general.architecture"}})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'general.architecture'")));
  for (const char* key : {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                          "llama.attention.head_count", "llama.context_length",
                          "llama.attention.layer_norm_rms_epsilon"}) {
    EXPECT_THAT(Load(TinyGguf({.skip_keys = {key}})).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(absl::StrCat("missing metadata key '", key, "'"))));
  }
  EXPECT_THAT(Load(TinyGguf({.extra_kv = [](Builder& b) { b.KvU32("llama.rope.dimension_count", 2); }})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("partial rotary")));
  EXPECT_THAT(Load(TinyGguf({.extra_kv = [](Builder& b) { b.KvU32("llama.expert_count", 8); }})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'llama.expert_count' = 8")));
  EXPECT_THAT(Load(TinyGguf({.extra_kv = [](Builder& b) { b.KvU32("llama.attention.value_length", 8); }})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("value_length")));
  EXPECT_THAT(Load(TinyGguf({.skip_keys = {"llama.attention.head_count"}, .extra_kv = [](Builder& b) {
                b.KvString("llama.attention.head_count", "nine");
              }})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'llama.attention.head_count' is string")));
  EXPECT_THAT(Load(TinyGguf({.skip_keys = {"llama.attention.head_count"},
                             .extra_kv = [](Builder& b) { b.KvU32("llama.attention.head_count", 0); }})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'llama.attention.head_count' = 0")));
  EXPECT_THAT(Load(TinyGguf({.extra_tensors = [](Builder& b) { b.TensorF32("blk.0.attn_q_norm.weight", {4}, Values(4, 1)); }})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("tensor 'blk.0.attn_q_norm.weight' is not part")));
  EXPECT_THAT(Load(TinyGguf({.extra_tensors = [](Builder& b) { b.TensorF32("blk.1.attn_norm.weight", {kDim}, Values(kDim, 1)); }})).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("tensor 'blk.1.attn_norm.weight'")));
}

TEST(GgufLoader, MissingTensorIsNamedWhenTheModelIsBuilt) {
  auto m = Load(TinyGguf({}));
  ASSERT_TRUE(m.ok());
  m->tensors.erase("model.layers.0.mlp.up_proj.weight");
  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = true});
  EXPECT_THAT(Transformer::Create(*m, &cpu, {}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.layers.0.mlp.up_proj.weight")));
}

}  // namespace
}  // namespace qrag::model
