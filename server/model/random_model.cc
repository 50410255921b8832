#include "server/model/random_model.h"

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::model {
namespace {

class Filler {
 public:
  Filler(uint64_t seed, LoadedModel* model) : rng_(seed), model_(model) {}

  void Add(const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto buf = std::make_shared<std::vector<float>>(n);
    // A cheap xorshift stream seeded from the main generator: multi-GB models fill in seconds.
    uint64_t s = rng_() | 1;
    const float span = hi - lo;
    for (int64_t i = 0; i < n; ++i) {
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      const float u = static_cast<float>((s * 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
      float v = lo + span * u;
      if (v == 0.0f) v = span * 1e-3f;  // never an exact zero
      (*buf)[i] = v;
    }
    HostTensor t;
    t.dtype = HostDType::kF32;
    t.shape = std::move(shape);
    t.data = reinterpret_cast<const uint8_t*>(buf->data());
    t.owner = buf;
    t.file = "<random>";
    model_->tensors[name] = std::move(t);
  }

  void AddLinear(const std::string& name, int64_t out, int64_t in) {
    const float a = std::sqrt(3.0f / static_cast<float>(in));
    Add(name, {out, in}, -a, a);
  }

 private:
  std::mt19937_64 rng_;
  LoadedModel* model_;
};

}  // namespace

absl::StatusOr<LoadedModel> MakeRandomModel(const ModelConfig& config, uint64_t seed) {
  QRAG_RETURN_IF_ERROR(ValidateModelConfig(config, "<random model>"));
  LoadedModel model;
  model.config = config;
  model.source = absl::StrCat("<random ", config.architecture, " seed ", seed, ">");
  Filler f(seed, &model);
  const int64_t dim = config.dim, q = config.q_dim(), kv = config.kv_dim(), hidden = config.hidden_dim;
  f.Add("model.embed_tokens.weight", {config.vocab_size, dim}, -1.0f, 1.0f);
  for (int l = 0; l < config.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    f.Add(p + "input_layernorm.weight", {dim}, 0.8f, 1.2f);
    f.Add(p + "post_attention_layernorm.weight", {dim}, 0.8f, 1.2f);
    f.AddLinear(p + "self_attn.q_proj.weight", q, dim);
    f.AddLinear(p + "self_attn.k_proj.weight", kv, dim);
    f.AddLinear(p + "self_attn.v_proj.weight", kv, dim);
    f.AddLinear(p + "self_attn.o_proj.weight", dim, q);
    if (config.qkv_bias) {
      f.Add(p + "self_attn.q_proj.bias", {q}, -0.1f, 0.1f);
      f.Add(p + "self_attn.k_proj.bias", {kv}, -0.1f, 0.1f);
      f.Add(p + "self_attn.v_proj.bias", {kv}, -0.1f, 0.1f);
    }
    f.AddLinear(p + "mlp.gate_proj.weight", hidden, dim);
    f.AddLinear(p + "mlp.up_proj.weight", hidden, dim);
    f.AddLinear(p + "mlp.down_proj.weight", dim, hidden);
  }
  f.Add("model.norm.weight", {dim}, 0.8f, 1.2f);
  if (!config.tie_embeddings) f.AddLinear("lm_head.weight", config.vocab_size, dim);
  return model;
}

absl::StatusOr<ModelConfig> NamedModelShape(const std::string& name) {
  ModelConfig c;
  c.architecture = "llama";
  c.rope_style = RopeStyle::kRotateHalf;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  auto llama2c = [&](int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int seq) {
    c.dim = dim;
    c.hidden_dim = hidden;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.head_dim = dim / heads;
    c.vocab_size = vocab;
    c.max_seq_len = seq;
    c.rope_style = RopeStyle::kInterleaved;
    c.tie_embeddings = true;
  };
  if (name == "stories260K") {
    llama2c(64, 172, 5, 8, 4, 512, 512);
  } else if (name == "stories15M") {
    llama2c(288, 768, 6, 6, 6, 32000, 256);
  } else if (name == "stories110M") {
    llama2c(768, 2048, 12, 12, 12, 32000, 1024);
  } else if (name == "tiny-gqa") {
    llama2c(48, 96, 2, 6, 2, 300, 128);
    c.rope_style = RopeStyle::kRotateHalf;
    c.tie_embeddings = false;
  } else if (name == "llama-3.2-1b") {
    c.dim = 2048;
    c.hidden_dim = 8192;
    c.n_layers = 16;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 64;
    c.vocab_size = 128256;
    c.max_seq_len = 131072;
    c.norm_eps = 1e-5f;
    c.rope_theta = 500000.0f;
    c.rope_scaling = {RopeScaling::Type::kLlama3, 32.0f, 1.0f, 4.0f, 8192, {}};
    c.tie_embeddings = true;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "llama-3-8b") {
    c.dim = 4096;
    c.hidden_dim = 14336;
    c.n_layers = 32;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.vocab_size = 128256;
    c.max_seq_len = 8192;
    c.rope_theta = 500000.0f;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128009};
  } else if (name == "qwen2-0.5b") {
    c.architecture = "qwen2";
    c.dim = 896;
    c.hidden_dim = 4864;
    c.n_layers = 24;
    c.n_heads = 14;
    c.n_kv_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 151936;
    c.max_seq_len = 32768;
    c.norm_eps = 1e-6f;
    c.rope_theta = 1000000.0f;
    c.tie_embeddings = true;
    c.qkv_bias = true;
    c.bos_token_id = -1;
    c.eos_token_ids = {151643};
  } else {
    return absl::NotFoundError(absl::StrCat("unknown model shape '", name,
                                            "'; known: stories260K, stories15M, stories110M, tiny-gqa, "
                                            "llama-3.2-1b, llama-3-8b, qwen2-0.5b"));
  }
  return c;
}

}  // namespace qrag::model
