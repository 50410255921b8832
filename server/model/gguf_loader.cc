#include "server/model/gguf_loader.h"

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/status.h"

namespace qrag::model {
namespace {

constexpr const char* kArchitectures[] = {"llama", "qwen2"};

// A metadata integer that must fit an int (> 0 unless `allow_zero`).
absl::StatusOr<int> ToInt(const GgufFile& f, const std::string& key, uint64_t v, bool allow_zero) {
  if (v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()) || (!allow_zero && v == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(f.source(), ": key '", key, "' = ", v, " is out of range"));
  }
  return static_cast<int>(v);
}

absl::StatusOr<int> RequiredInt(const GgufFile& f, const std::string& key) {
  QRAG_ASSIGN_OR_RETURN(uint64_t v, f.GetUint(key));
  return ToInt(f, key, v, /*allow_zero=*/false);
}

absl::StatusOr<int> OptionalInt(const GgufFile& f, const std::string& key, int fallback) {
  if (!f.Has(key)) return fallback;
  return RequiredInt(f, key);
}

absl::StatusOr<std::optional<int>> OptionalTokenId(const GgufFile& f, const std::string& key) {
  if (!f.Has(key)) return std::optional<int>();
  QRAG_ASSIGN_OR_RETURN(uint64_t v, f.GetUint(key));
  QRAG_ASSIGN_OR_RETURN(int id, ToInt(f, key, v, /*allow_zero=*/true));
  return std::optional<int>(id);
}

absl::Status Unsupported(const GgufFile& f, const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(f.source(), ": ", what));
}

// The HF name of a GGUF tensor of a llama/qwen2 model, "" for one the loader handles itself or ignores, or
// nullopt for a tensor it does not know.
std::optional<std::string> HfName(absl::string_view name, int n_layers) {
  if (name == "token_embd.weight") return std::string("model.embed_tokens.weight");
  if (name == "output_norm.weight") return std::string("model.norm.weight");
  if (name == "output.weight") return std::string("lm_head.weight");
  if (name == "rope_freqs.weight") return std::string();
  if (!absl::StartsWith(name, "blk.")) return std::nullopt;
  std::vector<absl::string_view> parts = absl::StrSplit(name.substr(4), absl::MaxSplits('.', 1));
  int layer;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &layer) || layer < 0 || layer >= n_layers) {
    return std::nullopt;
  }
  static constexpr std::pair<const char*, const char*> kLayerNames[] = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  // Old converters wrote RoPE tables as tensors; llama.cpp ignores them, and so does this loader.
  if (parts[1] == "attn_rot_embd") return std::string();
  for (const auto& [gguf, hf] : kLayerNames) {
    if (parts[1] == gguf) return absl::StrCat("model.layers.", layer, ".", hf);
  }
  return std::nullopt;
}

// The tensor as a HostTensor: a view of the mapping for F32/F16/BF16, else dequantized into an owned buffer.
absl::StatusOr<HostTensor> ToHostTensor(const GgufFile& f, const GgufTensorInfo& info) {
  HostTensor t;
  t.shape = info.shape();
  t.file = f.source();
  switch (info.type->type) {
    case quant::GgmlType::kF32:
    case quant::GgmlType::kF16:
    case quant::GgmlType::kBF16:
      t.dtype = info.type->type == quant::GgmlType::kF32   ? HostDType::kF32
                : info.type->type == quant::GgmlType::kF16 ? HostDType::kF16
                                                           : HostDType::kBF16;
      t.data = info.bytes.data();
      t.owner = f.owner();
      return t;
    default:
      break;
  }
  auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(info.numel));
  QRAG_RETURN_IF_ERROR(f.DequantizeInto(info, buffer->data()));
  t.dtype = HostDType::kF32;
  t.data = reinterpret_cast<const uint8_t*>(buffer->data());
  t.owner = std::move(buffer);
  return t;
}

}  // namespace

absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& f) {
  ModelConfig c;
  QRAG_ASSIGN_OR_RETURN(c.architecture, f.GetString("general.architecture"));
  bool known = false;
  for (const char* a : kArchitectures) known = known || c.architecture == a;
  if (!known) {
    return Unsupported(f, absl::StrCat("architecture '", c.architecture,
                                       "' is not supported (supported: llama, qwen2)"));
  }
  const std::string p = c.architecture + ".";
  QRAG_ASSIGN_OR_RETURN(c.dim, RequiredInt(f, p + "embedding_length"));
  QRAG_ASSIGN_OR_RETURN(c.hidden_dim, RequiredInt(f, p + "feed_forward_length"));
  QRAG_ASSIGN_OR_RETURN(c.n_layers, RequiredInt(f, p + "block_count"));
  QRAG_ASSIGN_OR_RETURN(c.n_heads, RequiredInt(f, p + "attention.head_count"));
  QRAG_ASSIGN_OR_RETURN(c.n_kv_heads, OptionalInt(f, p + "attention.head_count_kv", c.n_heads));
  QRAG_ASSIGN_OR_RETURN(c.max_seq_len, RequiredInt(f, p + "context_length"));
  QRAG_ASSIGN_OR_RETURN(double eps, f.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  c.norm_eps = static_cast<float>(eps);
  QRAG_ASSIGN_OR_RETURN(c.head_dim, OptionalInt(f, p + "attention.key_length", c.dim / c.n_heads));
  QRAG_ASSIGN_OR_RETURN(int value_length, OptionalInt(f, p + "attention.value_length", c.head_dim));
  if (value_length != c.head_dim) {
    return Unsupported(f, absl::StrCat("key '", p, "attention.value_length' = ", value_length,
                                       " differs from the key length ", c.head_dim));
  }
  QRAG_ASSIGN_OR_RETURN(int rope_dims, OptionalInt(f, p + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim) {
    return Unsupported(f, absl::StrCat("key '", p, "rope.dimension_count' = ", rope_dims,
                                       ": partial rotary embeddings (head_dim ", c.head_dim, ") are not supported"));
  }
  if (f.Has(p + "expert_count")) {
    QRAG_ASSIGN_OR_RETURN(uint64_t experts, f.GetUint(p + "expert_count"));
    if (experts > 0) {
      return Unsupported(f, absl::StrCat("key '", p, "expert_count' = ", experts,
                                         ": mixture-of-experts models are not supported"));
    }
  }

  // RoPE.
  c.rope_style = c.architecture == "llama" ? RopeStyle::kInterleaved : RopeStyle::kRotateHalf;
  if (f.Has(p + "rope.freq_base")) {
    QRAG_ASSIGN_OR_RETURN(double base, f.GetFloat(p + "rope.freq_base"));
    c.rope_theta = static_cast<float>(base);
  }
  std::string scaling = "none";
  if (f.Has(p + "rope.scaling.type")) {
    QRAG_ASSIGN_OR_RETURN(scaling, f.GetString(p + "rope.scaling.type"));
  }
  if (scaling == "linear") {
    QRAG_ASSIGN_OR_RETURN(double factor, f.GetFloat(p + "rope.scaling.factor"));
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    c.rope_scaling.factor = static_cast<float>(factor);
  } else if (scaling != "none") {
    return Unsupported(f, absl::StrCat("key '", p, "rope.scaling.type' = '", scaling,
                                       "' is not supported (none, linear)"));
  } else if (f.Has(p + "rope.scale_linear")) {
    QRAG_ASSIGN_OR_RETURN(double factor, f.GetFloat(p + "rope.scale_linear"));
    if (factor != 1.0) {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
      c.rope_scaling.factor = static_cast<float>(factor);
    }
  }
  if (const GgufTensorInfo* ff = f.FindTensor("rope_freqs.weight"); ff != nullptr) {
    if (c.rope_scaling.type != RopeScaling::Type::kNone) {
      return Unsupported(f, "tensor 'rope_freqs.weight' together with rope.scaling.type linear");
    }
    QRAG_ASSIGN_OR_RETURN(c.rope_scaling.freq_factors, f.Dequantize(*ff));
    c.rope_scaling.type = RopeScaling::Type::kFrequencyFactors;
  }

  // Vocabulary and special tokens.
  if (f.Has(p + "vocab_size")) {
    QRAG_ASSIGN_OR_RETURN(c.vocab_size, RequiredInt(f, p + "vocab_size"));
  } else if (f.Has("tokenizer.ggml.tokens")) {
    QRAG_ASSIGN_OR_RETURN(const std::vector<absl::string_view>* tokens, f.GetStringArray("tokenizer.ggml.tokens"));
    QRAG_ASSIGN_OR_RETURN(c.vocab_size, ToInt(f, "tokenizer.ggml.tokens", tokens->size(), false));
  } else if (const GgufTensorInfo* emb = f.FindTensor("token_embd.weight"); emb != nullptr && emb->dims.size() == 2) {
    QRAG_ASSIGN_OR_RETURN(c.vocab_size, ToInt(f, "token_embd.weight", emb->dims[1], false));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(f.source(), ": missing metadata key '", p,
                                                   "vocab_size' (and no tokenizer.ggml.tokens or token_embd.weight)"));
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<int> bos, OptionalTokenId(f, "tokenizer.ggml.bos_token_id"));
  if (bos.has_value()) c.bos_token_id = *bos;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    QRAG_ASSIGN_OR_RETURN(std::optional<int> id, OptionalTokenId(f, key));
    if (id.has_value() && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(*id);
    }
  }

  c.tie_embeddings = f.FindTensor("output.weight") == nullptr;
  c.qkv_bias = c.architecture == "qwen2" || f.FindTensor("blk.0.attn_q.bias") != nullptr;
  QRAG_RETURN_IF_ERROR(ValidateModelConfig(c, f.source()));
  return c;
}

absl::StatusOr<LoadedModel> LoadGgufModel(const GgufFile& f) {
  LoadedModel m;
  m.source = f.source();
  QRAG_ASSIGN_OR_RETURN(m.config, GgufModelConfig(f));
  for (const GgufTensorInfo& info : f.tensors()) {
    std::optional<std::string> hf = HfName(info.name, m.config.n_layers);
    if (!hf.has_value()) {
      return Unsupported(f, absl::StrCat("tensor '", info.name, "' is not part of a ", m.config.architecture,
                                         " model that qrag serves"));
    }
    if (hf->empty()) continue;
    if (m.config.architecture == "qwen2" || m.config.qkv_bias || !absl::EndsWith(info.name, ".bias")) {
      QRAG_ASSIGN_OR_RETURN(HostTensor t, ToHostTensor(f, info));
      m.tensors.emplace(*hf, std::move(t));
    }
  }
  return m;
}

absl::StatusOr<LoadedModel> LoadGgufCheckpoint(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(GgufFile f, GgufFile::Open(path));
  return LoadGgufModel(f);
}

}  // namespace qrag::model
