#include "server/model/hf_loader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/host_tensor.h"
#include "server/model/model_config.h"
#include "server/model/safetensors.h"
#include "server/quant/bf16.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::nlohmann::json;
using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSource[] = "/ckpt/config.json";

// A small but complete Llama config (GQA: 4 query heads, 2 KV heads).
json LlamaConfig() {
  return {{"architectures", json::array({"LlamaForCausalLM"})},
          {"model_type", "llama"},
          {"hidden_size", 16},
          {"intermediate_size", 40},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 32},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"torch_dtype", "float32"}};
}

json Qwen2Config() {
  json c = LlamaConfig();
  c["architectures"] = json::array({"Qwen2ForCausalLM"});
  c["model_type"] = "qwen2";
  c["use_sliding_window"] = false;
  c["sliding_window"] = 32;
  c["max_window_layers"] = 2;
  c["rope_theta"] = 1000000.0;
  c["rms_norm_eps"] = 1e-6;
  return c;
}

json MistralConfig() {
  json c = LlamaConfig();
  c["architectures"] = json::array({"MistralForCausalLM"});
  c["model_type"] = "mistral";
  c["sliding_window"] = 48;
  return c;
}

absl::StatusOr<ModelConfig> Parse(const json& j) { return ParseHfConfig(j.dump(), kSource); }

// ------------------------------------------------------------------------------------------------
// config.json

TEST(HfConfig, LlamaMapsEveryField) {
  json j = LlamaConfig();
  j["head_dim"] = 4;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->dim, 16);
  EXPECT_EQ(c->hidden_dim, 40);
  EXPECT_EQ(c->n_layers, 2);
  EXPECT_EQ(c->n_heads, 4);
  EXPECT_EQ(c->n_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->vocab_size, 32);
  EXPECT_EQ(c->max_seq_len, 64);
  EXPECT_FLOAT_EQ(c->norm_eps, 1e-5f);
  EXPECT_EQ(c->rope_theta, 10000.0f);
  EXPECT_EQ(c->rope_style, RopeStyle::kRotateHalf);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c->tie_embeddings);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->sliding_window, 0);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
}

TEST(HfConfig, DefaultsWhenOptionalFieldsAreAbsent) {
  json j = LlamaConfig();
  for (const char* key : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "hidden_act",
                          "tie_word_embeddings", "bos_token_id", "eos_token_id", "architectures"}) {
    j.erase(key);
  }
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->n_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 4);  // 16 / 4
  EXPECT_FLOAT_EQ(c->norm_eps, 1e-6f);
  EXPECT_EQ(c->rope_theta, 10000.0f);
  EXPECT_FALSE(c->tie_embeddings);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());

  // Explicit nulls mean the same as absent.
  j = LlamaConfig();
  j["num_key_value_heads"] = nullptr;
  j["head_dim"] = nullptr;
  j["bos_token_id"] = nullptr;
  j["eos_token_id"] = nullptr;
  j["rope_scaling"] = nullptr;
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
}

TEST(HfConfig, Llama31RopeScalingAndEosList) {
  // The rope/eos fields of meta-llama/Llama-3.1-8B-Instruct's config.json.
  json j = LlamaConfig();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192},
                       {"rope_type", "llama3"}};
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["vocab_size"] = 128256;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
}

TEST(HfConfig, LinearRopeScalingWithLegacyTypeKey) {
  json j = LlamaConfig();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 2.0f);

  j["rope_scaling"] = {{"rope_type", "default"}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(HfConfig, UnsupportedRopeScalingIsUnimplemented) {
  for (const char* type : {"yarn", "dynamic", "longrope"}) {
    json j = LlamaConfig();
    j["rope_scaling"] = {{"rope_type", type}, {"factor", 4.0}};
    EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                   AllOf(HasSubstr(kSource), HasSubstr("rope_scaling.rope_type"),
                                         HasSubstr(type), HasSubstr("linear, llama3"))));
  }
}

TEST(HfConfig, BadRopeScalingIsInvalid) {
  json j = LlamaConfig();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr(kSource),
                                       HasSubstr("rope_scaling.original_max_position_embeddings"),
                                       HasSubstr("missing"))));
  j["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rope_scaling.factor")));
  j["rope_scaling"] = {{"factor", 2.0}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rope_scaling.rope_type")));
  j["rope_scaling"] = "llama3";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("'rope_scaling'"), HasSubstr("is a string"))));
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1.0}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rope_scaling.factor")));
}

// transformers >= 5 writes RoPE settings only under "rope_parameters" (SmolLM2-135M-Instruct converted from
// its GGUF: theta 100000, no top-level rope_theta); qrag used to ignore them and run with 10000.
TEST(HfConfig, Transformers5RopeParameters) {
  json j = LlamaConfig();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_theta", 100000.0}, {"rope_type", "default"}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 100000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);

  j["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "llama3"}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);

  j["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                 AllOf(HasSubstr("rope_parameters.rope_type"), HasSubstr("yarn"))));
  j["rope_parameters"] = {{"full_attention", {{"rope_theta", 1e6}}}, {"sliding_attention", {{"rope_theta", 1e4}}}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("per layer type")));
  j["rope_parameters"] = {{"rope_theta", 100000.0}};
  j["rope_theta"] = 10000.0;
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contradicts")));
}

TEST(HfConfig, SettingsThatChangeTheMathAreRefusedNotIgnored) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"partial_rotary_factor", 0.5},  {"attn_logit_softcapping", 50.0}, {"final_logit_softcapping", 30.0},
      {"logits_scaling", 8.0},         {"embedding_multiplier", 12.0},   {"residual_multiplier", 0.22},
      {"attention_multiplier", 0.015}, {"use_qk_norm", true},            {"qk_layernorm", true}};
  for (const auto& [key, value] : cases) {
    json j = LlamaConfig();
    j[key] = value;
    EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr(key))) << key;
  }
  json m = MistralConfig();
  m["attention_bias"] = true;
  EXPECT_THAT(Parse(m), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("attention_bias")));
  // Their neutral values change nothing and are accepted.
  json j = LlamaConfig();
  j["partial_rotary_factor"] = 1.0;
  j["logits_scaling"] = 1.0;
  j["use_qk_norm"] = false;
  j["attn_logit_softcapping"] = nullptr;
  EXPECT_TRUE(Parse(j).ok());
}

TEST(HfConfig, TiedEmbeddings) {
  json j = LlamaConfig();
  j["tie_word_embeddings"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_embeddings);
}

TEST(HfConfig, Qwen2HasQkvBiasAndSlidesOnlyWhenEnabled) {
  auto c = Parse(Qwen2Config());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_EQ(c->sliding_window, 0);  // use_sliding_window false
  EXPECT_EQ(c->rope_theta, 1000000.0f);

  json j = Qwen2Config();
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;  // every layer slides
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 32);

  j["max_window_layers"] = 2;  // == num_hidden_layers: no layer slides
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 0);

  j["max_window_layers"] = 1;  // layer 0 full, layer 1 sliding
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                 AllOf(HasSubstr(kSource), HasSubstr("max_window_layers"))));
}

TEST(HfConfig, MistralSlidingWindowIntNullOrDefault) {
  auto c = Parse(MistralConfig());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "mistral");
  EXPECT_EQ(c->sliding_window, 48);
  EXPECT_FALSE(c->qkv_bias);

  json j = MistralConfig();
  j["sliding_window"] = nullptr;  // Mistral-7B-v0.2 and later
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 0);

  j.erase("sliding_window");  // transformers' MistralConfig default
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);

  j["sliding_window"] = "4096";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("'sliding_window'"), HasSubstr("expected an integer"))));
}

TEST(HfConfig, LlamaAttentionBiasMeansQkvBias) {
  json j = LlamaConfig();
  j["attention_bias"] = true;
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  j["attention_bias"] = false;
  EXPECT_FALSE(Parse(j)->qkv_bias);
}

TEST(HfConfig, UnsupportedArchitectureIsUnimplementedListingSupported) {
  json j = LlamaConfig();
  j["architectures"] = json::array({"GPT2LMHeadModel"});
  j["model_type"] = "gpt2";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                 AllOf(HasSubstr(kSource), HasSubstr("GPT2LMHeadModel"),
                                       HasSubstr("LlamaForCausalLM"), HasSubstr("MistralForCausalLM"),
                                       HasSubstr("Qwen2ForCausalLM"))));
  j.erase("architectures");
  j["model_type"] = "gemma";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                 AllOf(HasSubstr("model_type 'gemma'"), HasSubstr("LlamaForCausalLM"))));
  j.erase("model_type");
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr(kSource), HasSubstr("'architectures'"), HasSubstr("missing"))));
}

TEST(HfConfig, ContradictoryModelTypeIsInvalid) {
  json j = LlamaConfig();
  j["model_type"] = "qwen2";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("'model_type'"), HasSubstr("contradicts"))));
}

TEST(HfConfig, MissingRequiredFieldNamesConfigAndField) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "vocab_size", "max_position_embeddings"}) {
    json j = LlamaConfig();
    j.erase(key);
    EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                   AllOf(HasSubstr(kSource), HasSubstr(absl::StrCat("'", key, "'")),
                                         HasSubstr("missing"))))
        << key;
  }
}

TEST(HfConfig, WrongJsonTypeNamesField) {
  struct Case {
    const char* key;
    json value;
    const char* problem;
  };
  const std::vector<Case> cases = {
      {"hidden_size", "16", "is a string, expected an integer"},
      {"hidden_size", 16.5, "is a floating-point number, expected an integer"},
      {"num_hidden_layers", 1e12, "expected an integer"},
      {"vocab_size", 4294967296LL, "out of range"},
      {"rms_norm_eps", "1e-5", "expected a number"},
      {"tie_word_embeddings", "yes", "expected true or false"},
      {"eos_token_id", "2", "expected an integer or a list"},
      {"eos_token_id", json::array({1, "2"}), "expected an integer"},
      {"architectures", "LlamaForCausalLM", "expected a list of strings"},
      {"model_type", 7, "expected a string"},
      {"attention_bias", 1, "expected true or false"},
  };
  for (const Case& k : cases) {
    json j = LlamaConfig();
    j[k.key] = k.value;
    EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                   AllOf(HasSubstr(kSource), HasSubstr(absl::StrCat("'", k.key, "'")),
                                         HasSubstr(k.problem))))
        << k.key << " = " << k.value.dump();
  }
}

TEST(HfConfig, NotJsonOrNotAnObject) {
  EXPECT_THAT(ParseHfConfig("{\"hidden_size\": ", kSource),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(kSource), HasSubstr("invalid JSON"))));
  EXPECT_THAT(ParseHfConfig("[1]", kSource),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(kSource), HasSubstr("an array"))));
  EXPECT_THAT(ParseHfConfig("", kSource), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

TEST(HfConfig, InconsistentNumbersFailValidation) {
  json j = LlamaConfig();
  j["num_key_value_heads"] = 3;  // 4 query heads are not a multiple of 3
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr(kSource), HasSubstr("n_kv_heads"))));
  j = LlamaConfig();
  j["num_attention_heads"] = 5;  // does not divide 16 and no head_dim
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("'num_attention_heads'"), HasSubstr("does not divide"))));
  j = LlamaConfig();
  j["hidden_size"] = 0;
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(kSource)));
}

TEST(HfConfig, UnsupportedFeaturesAreUnimplemented) {
  json j = LlamaConfig();
  j["hidden_act"] = "gelu";
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented,
                                 AllOf(HasSubstr(kSource), HasSubstr("hidden_act"), HasSubstr("gelu"))));
  j = LlamaConfig();
  j["mlp_bias"] = true;
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("mlp_bias")));
  j = LlamaConfig();
  j["quantization_config"] = {{"quant_method", "gptq"}};
  EXPECT_THAT(Parse(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("quantization_config")));
}

// ------------------------------------------------------------------------------------------------
// Checkpoint directories

using Shape = std::vector<int64_t>;

// Every tensor a Llama-family checkpoint of `c` holds, with its shape (torch.nn.Linear: [out, in]).
std::vector<std::pair<std::string, Shape>> CheckpointTensors(const ModelConfig& c) {
  const int64_t d = c.dim, h = c.hidden_dim, q = c.q_dim(), kv = c.kv_dim(), v = c.vocab_size;
  std::vector<std::pair<std::string, Shape>> t = {{"model.embed_tokens.weight", {v, d}}};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    t.push_back({p + "input_layernorm.weight", {d}});
    t.push_back({p + "self_attn.q_proj.weight", {q, d}});
    t.push_back({p + "self_attn.k_proj.weight", {kv, d}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, d}});
    t.push_back({p + "self_attn.o_proj.weight", {d, q}});
    if (c.qkv_bias) {
      t.push_back({p + "self_attn.q_proj.bias", {q}});
      t.push_back({p + "self_attn.k_proj.bias", {kv}});
      t.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    t.push_back({p + "post_attention_layernorm.weight", {d}});
    t.push_back({p + "mlp.gate_proj.weight", {h, d}});
    t.push_back({p + "mlp.up_proj.weight", {h, d}});
    t.push_back({p + "mlp.down_proj.weight", {d, h}});
  }
  t.push_back({"model.norm.weight", {d}});
  if (!c.tie_embeddings) t.push_back({"lm_head.weight", {v, d}});
  return t;
}

// Random weights of `dtype` as bytes; `values` gets what they decode to exactly.
std::string RandomWeights(HostDType dtype, int64_t n, std::mt19937* rng, std::vector<float>* values) {
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::string bytes;
  values->clear();
  for (int64_t i = 0; i < n; ++i) {
    const float x = dist(*rng);
    if (dtype == HostDType::kF32) {
      char b[4];
      std::memcpy(b, &x, 4);
      bytes.append(b, 4);
      values->push_back(x);
    } else {
      const uint16_t bits = dtype == HostDType::kF16 ? quant::FloatToHalf(x) : quant::FloatToBf16(x);
      bytes.push_back(static_cast<char>(bits & 0xff));
      bytes.push_back(static_cast<char>(bits >> 8));
      values->push_back(dtype == HostDType::kF16 ? quant::HalfToFloat(bits) : quant::Bf16ToFloat(bits));
    }
  }
  return bytes;
}

struct WrittenCheckpoint {
  ModelConfig config;
  std::map<std::string, std::pair<Shape, std::vector<float>>> tensors;  // name -> shape, exact values
};

// Writes config.json and random weights into `dir`: model.safetensors when n_shards == 0, else
// model-0000i-of-0000n.safetensors + model.safetensors.index.json.
WrittenCheckpoint WriteHfCheckpoint(const std::string& dir, const json& config, HostDType dtype,
                                    int n_shards = 0, uint32_t seed = 7) {
  WrittenCheckpoint out;
  WriteFile(dir + "/config.json", config.dump(2));
  auto parsed = ParseHfConfig(config.dump(), "config.json");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  out.config = *parsed;
  std::mt19937 rng(seed);
  std::vector<SafetensorsWriter> writers(std::max(n_shards, 1));
  json weight_map = json::object();
  int k = 0;
  for (const auto& [name, shape] : CheckpointTensors(out.config)) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> values;
    std::string bytes = RandomWeights(dtype, n, &rng, &values);
    const int shard = k++ % static_cast<int>(writers.size());
    EXPECT_TRUE(writers[shard].Add(name, SafetensorsDTypeName(dtype), shape, bytes).ok());
    weight_map[name] = absl::StrCat("model-0000", shard + 1, "-of-0000", n_shards, ".safetensors");
    out.tensors[name] = {shape, std::move(values)};
  }
  if (n_shards == 0) {
    writers[0].SetMetadata("format", "pt");
    EXPECT_TRUE(writers[0].Write(dir + "/model.safetensors").ok());
  } else {
    for (int i = 0; i < n_shards; ++i) {
      EXPECT_TRUE(
          writers[i].Write(absl::StrCat(dir, "/model-0000", i + 1, "-of-0000", n_shards, ".safetensors")).ok());
    }
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    WriteFile(dir + "/model.safetensors.index.json", index.dump(2));
  }
  return out;
}

// Every written tensor is in `model` with its shape and exact values.
void ExpectAllTensors(const LoadedModel& model, const WrittenCheckpoint& written, HostDType dtype) {
  EXPECT_EQ(model.tensors.size(), written.tensors.size());
  for (const auto& [name, shape_values] : written.tensors) {
    SCOPED_TRACE(name);
    auto t = model.Get(name, shape_values.first);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->dtype, dtype);
    EXPECT_EQ((*t)->ToFloatVector(), shape_values.second);
  }
}

TEST(HfLoader, TinyLlamaF32) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kF32);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->source, dir.path());
  EXPECT_EQ(m->config.architecture, "llama");
  EXPECT_EQ(m->config.n_kv_heads, 2);
  EXPECT_EQ(m->config.rope_style, RopeStyle::kRotateHalf);
  ExpectAllTensors(*m, w, HostDType::kF32);
  auto lm_head = m->Get("lm_head.weight", {32, 16});
  ASSERT_TRUE(lm_head.ok());
  EXPECT_EQ((*lm_head)->file, dir.Join("model.safetensors"));
  EXPECT_NE((*lm_head)->ToFloatVector()[0], 0.0f);
}

TEST(HfLoader, TiedLlamaHasNoLmHead) {
  TempDir dir;
  json config = LlamaConfig();
  config["tie_word_embeddings"] = true;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), config, HostDType::kBF16);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->config.tie_embeddings);
  ExpectAllTensors(*m, w, HostDType::kBF16);
  EXPECT_EQ(*m->GetOptional("lm_head.weight", {32, 16}), nullptr);
}

TEST(HfLoader, Qwen2Bf16WithQkvBiases) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), Qwen2Config(), HostDType::kBF16);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config.architecture, "qwen2");
  EXPECT_TRUE(m->config.qkv_bias);
  ExpectAllTensors(*m, w, HostDType::kBF16);
  auto qb = m->Get("model.layers.1.self_attn.q_proj.bias", {16});
  ASSERT_TRUE(qb.ok()) << qb.status();
  EXPECT_TRUE(m->Get("model.layers.0.self_attn.k_proj.bias", {8}).ok());
  EXPECT_TRUE(m->Get("model.layers.0.self_attn.v_proj.bias", {8}).ok());
}

TEST(HfLoader, MistralF16) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), MistralConfig(), HostDType::kF16);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config.architecture, "mistral");
  EXPECT_EQ(m->config.sliding_window, 48);
  ExpectAllTensors(*m, w, HostDType::kF16);
}

TEST(HfLoader, ShardedLlamaThreeShards) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kBF16, /*n_shards=*/3);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectAllTensors(*m, w, HostDType::kBF16);
  std::set<std::string> files;
  for (const auto& [name, t] : m->tensors) files.insert(t.file);
  EXPECT_EQ(files.size(), 3u);
}

TEST(HfLoader, ShardedMistralTwoShards) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), MistralConfig(), HostDType::kF16, /*n_shards=*/2);
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectAllTensors(*m, w, HostDType::kF16);
}

TEST(HfLoader, PrefersTheIndexOverASingleFile) {
  TempDir dir;
  WrittenCheckpoint w = WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kF32, /*n_shards=*/2);
  // A stale single file with other values beside the index.
  SafetensorsWriter stale;
  ASSERT_TRUE(stale.Add("model.norm.weight", "F32", {16}, std::string(64, '\0')).ok());
  ASSERT_TRUE(stale.Write(dir.Join("model.safetensors")).ok());
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  ExpectAllTensors(*m, w, HostDType::kF32);
}

TEST(HfLoader, MissingSafetensorsIsNotFoundAndMentionsBinCheckpoints) {
  TempDir dir;
  WriteFile(dir.Join("config.json"), LlamaConfig().dump());
  WriteFile(dir.Join("pytorch_model.bin"), "PK\x03\x04");
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(dir.path()), HasSubstr("model.safetensors.index.json"),
                             HasSubstr("model.safetensors"), HasSubstr(".bin checkpoints are not supported"),
                             HasSubstr("found pytorch_model.bin"), HasSubstr("convert"))));
}

TEST(HfLoader, MissingConfigOrDirectoryIsNotFound) {
  TempDir dir;
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.Join("config.json"))));
  EXPECT_THAT(LoadHfCheckpoint(dir.Join("absent")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.Join("absent"))));
}

TEST(HfLoader, UnsupportedArchitectureInDirectory) {
  TempDir dir;
  json config = LlamaConfig();
  config["architectures"] = json::array({"Phi3ForCausalLM"});
  config["model_type"] = "phi3";
  WriteFile(dir.Join("config.json"), config.dump());
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr(dir.Join("config.json")), HasSubstr("Phi3ForCausalLM"))));
}

TEST(HfLoader, UnsupportedDTypeWeightIsUnimplementedButBuffersAreSkipped) {
  TempDir dir;
  WriteFile(dir.Join("config.json"), LlamaConfig().dump());
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("model.norm.weight", "F32", {16}, std::string(64, '\0')).ok());
  ASSERT_TRUE(w.Add("model.position_ids", "I64", {1, 4}, std::string(32, '\0')).ok());
  ASSERT_TRUE(w.Write(dir.Join("model.safetensors")).ok());
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->tensors.contains("model.norm.weight"));
  EXPECT_FALSE(m->tensors.contains("model.position_ids"));

  ASSERT_TRUE(w.Add("model.layers.0.self_attn.q_proj.weight", "F8_E4M3", {16, 16}, std::string(256, '\0')).ok());
  ASSERT_TRUE(w.Write(dir.Join("model.safetensors")).ok());
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr(dir.Join("model.safetensors")),
                             HasSubstr("model.layers.0.self_attn.q_proj.weight"), HasSubstr("F8_E4M3"))));
}

TEST(HfLoader, OutputProjectionBiasIsUnimplemented) {
  TempDir dir;
  json config = LlamaConfig();
  config["attention_bias"] = true;
  WriteHfCheckpoint(dir.path(), config, HostDType::kF32);
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("model.layers.0.self_attn.o_proj.bias", "F32", {16}, std::string(64, '\0')).ok());
  ASSERT_TRUE(w.Write(dir.Join("model.safetensors")).ok());  // replaces the weights: enough for the check
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("o_proj.bias")));
}

TEST(HfLoader, WrongShapeAndMissingTensorSurfaceThroughGet) {
  TempDir dir;
  WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kF32);
  // Rewrite the file with one k_proj transposed and lm_head missing.
  auto f = SafetensorsFile::Open(dir.Join("model.safetensors"));
  ASSERT_TRUE(f.ok());
  SafetensorsWriter w;
  for (const auto& info : f->tensors()) {
    if (info.name == "lm_head.weight") continue;
    std::vector<int64_t> shape = info.shape;
    if (info.name == "model.layers.1.self_attn.k_proj.weight") std::swap(shape[0], shape[1]);
    ASSERT_TRUE(w.Add(info.name, info.dtype, shape,
                      std::string(reinterpret_cast<const char*>(info.bytes.data()), info.bytes.size()))
                    .ok());
  }
  ASSERT_TRUE(w.Write(dir.Join("model.safetensors")).ok());
  auto m = LoadHfCheckpoint(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(m->Get("model.layers.1.self_attn.k_proj.weight", {8, 16}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(dir.Join("model.safetensors")), HasSubstr("k_proj.weight"),
                             HasSubstr("has shape [16, 8], expected [8, 16]"))));
  EXPECT_THAT(m->Get("lm_head.weight", {32, 16}),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(dir.path()), HasSubstr("lm_head.weight"))));
}

TEST(HfLoader, CorruptWeightsNameTheFile) {
  TempDir dir;
  WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kF32);
  const std::string path = dir.Join("model.safetensors");
  const std::string bytes = qrag::testing::ReadFile(path);
  WriteFile(path, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(path), HasSubstr("out of the data area"))));
}

TEST(HfLoader, ShardedCheckpointWithMissingShard) {
  TempDir dir;
  WriteHfCheckpoint(dir.path(), LlamaConfig(), HostDType::kF32, /*n_shards=*/2);
  std::filesystem::remove(dir.Join("model-00001-of-00002.safetensors"));
  EXPECT_THAT(LoadHfCheckpoint(dir.path()),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("model-00001-of-00002"))));
}

}  // namespace
}  // namespace qrag::model
