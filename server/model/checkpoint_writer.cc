#include "server/model/checkpoint_writer.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "server/common/status.h"
#include "server/model/safetensors.h"
#include "server/quant/bf16.h"

namespace qrag::model {
namespace {

absl::Status WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

template <typename T>
void Append(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void AppendFloats(std::string& out, const std::vector<float>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string LayerName(int l, const char* suffix) { return absl::StrCat("model.layers.", l, ".", suffix); }

constexpr const char* kLayerMatrices[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                          "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                          "mlp.gate_proj.weight",    "mlp.down_proj.weight",
                                          "mlp.up_proj.weight"};

// Q8_0 as llama2.c export.py quantize_q80: per group, scale = max|w| / 127, q = round(w / scale).
void AppendQ8(std::string& out, const std::vector<float>& w, int group) {
  std::vector<float> scales;
  std::string codes;
  codes.reserve(w.size());
  for (size_t g = 0; g < w.size() / group; ++g) {
    float amax = 0;
    for (int i = 0; i < group; ++i) amax = std::max(amax, std::fabs(w[g * group + i]));
    const float scale = amax / 127.0f;
    scales.push_back(scale);
    for (int i = 0; i < group; ++i) {
      const float q = scale == 0 ? 0.0f : std::nearbyint(w[g * group + i] / scale);
      codes.push_back(static_cast<char>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f))));
    }
  }
  out += codes;
  AppendFloats(out, scales);
}

// HF's permute(w, n_heads, rows, cols): row h*hd + 2i + t of the interleaved layout moves to
// h*hd + t*hd/2 + i (transformers convert_llama_weights_to_hf.py).
std::vector<float> PermuteForRotateHalf(const std::vector<float>& w, int heads, int head_dim, int64_t cols) {
  std::vector<float> out(w.size());
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int t = 0; t < 2; ++t) {
        const int64_t src = static_cast<int64_t>(h) * head_dim + 2 * i + t;
        const int64_t dst = static_cast<int64_t>(h) * head_dim + t * half + i;
        std::memcpy(&out[dst * cols], &w[src * cols], cols * sizeof(float));
      }
    }
  }
  return out;
}

std::string EncodeAs(const std::vector<float>& v, HostDType dtype) {
  std::string bytes;
  switch (dtype) {
    case HostDType::kF32:
      bytes.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
      break;
    case HostDType::kF16:
      for (float x : v) Append(bytes, quant::FloatToHalf(x));
      break;
    case HostDType::kBF16:
      for (float x : v) Append(bytes, quant::FloatToBf16(x));
      break;
  }
  return bytes;
}

}  // namespace

absl::Status WriteLlama2cCheckpoint(const LoadedModel& model, const std::string& path,
                                    const Llama2cWriteOptions& options) {
  const ModelConfig& c = model.config;
  if (c.architecture != "llama" || c.qkv_bias || c.rope_style != RopeStyle::kInterleaved ||
      c.head_dim * c.n_heads != c.dim) {
    return absl::InvalidArgumentError(
        "llama2.c format holds only Llama models with interleaved RoPE, no biases and head_dim = dim / n_heads");
  }
  if (options.version < 0 || options.version > 2) {
    return absl::InvalidArgumentError(absl::StrCat("llama2.c version ", options.version, " (use 0, 1 or 2)"));
  }
  const int64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hidden = c.hidden_dim;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) -> absl::StatusOr<std::vector<float>> {
    QRAG_ASSIGN_OR_RETURN(const HostTensor* t, model.Get(name, shape));
    return t->ToFloatVector();
  };
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"self_attn.q_proj.weight", {q, dim}},       {"self_attn.k_proj.weight", {kv, dim}},
      {"self_attn.v_proj.weight", {kv, dim}},      {"self_attn.o_proj.weight", {dim, q}},
      {"mlp.gate_proj.weight", {hidden, dim}},     {"mlp.down_proj.weight", {dim, hidden}},
      {"mlp.up_proj.weight", {hidden, dim}}};
  const bool shared = c.tie_embeddings;

  std::string out;
  const int32_t params[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                             options.version == 0 && !shared ? -c.vocab_size : c.vocab_size, c.max_seq_len};
  if (options.version > 0) {
    Append(out, uint32_t{0x616b3432});
    Append(out, int32_t{options.version});
    for (int32_t p : params) Append(out, p);
    Append(out, static_cast<uint8_t>(shared ? 1 : 0));
    if (options.version == 2) Append(out, int32_t{options.group_size});
    out.resize(256, '\0');
  } else {
    for (int32_t p : params) Append(out, p);
  }

  auto norms = [&](const char* suffix) -> absl::Status {
    for (int l = 0; l < c.n_layers; ++l) {
      QRAG_ASSIGN_OR_RETURN(auto v, get(LayerName(l, suffix), {dim}));
      AppendFloats(out, v);
    }
    return absl::OkStatus();
  };
  auto matrices = [&](const char* suffix, bool q8) -> absl::Status {
    for (int l = 0; l < c.n_layers; ++l) {
      QRAG_ASSIGN_OR_RETURN(auto v, get(LayerName(l, suffix), shapes.at(suffix)));
      if (q8) {
        if (v.size() % options.group_size != 0) {
          return absl::InvalidArgumentError(absl::StrCat(suffix, " size ", v.size(), " is not a multiple of group ",
                                                         options.group_size));
        }
        AppendQ8(out, v, options.group_size);
      } else {
        AppendFloats(out, v);
      }
    }
    return absl::OkStatus();
  };
  QRAG_ASSIGN_OR_RETURN(auto emb, get("model.embed_tokens.weight", {c.vocab_size, dim}));
  QRAG_ASSIGN_OR_RETURN(auto final_norm, get("model.norm.weight", {dim}));
  std::vector<float> cls;
  if (!shared) {
    QRAG_ASSIGN_OR_RETURN(cls, get("lm_head.weight", {c.vocab_size, dim}));
  }
  if (options.version == 0) {
    AppendFloats(out, emb);
    QRAG_RETURN_IF_ERROR(norms("input_layernorm.weight"));
    for (int i = 0; i < 4; ++i) QRAG_RETURN_IF_ERROR(matrices(kLayerMatrices[i], false));
    QRAG_RETURN_IF_ERROR(norms("post_attention_layernorm.weight"));
    for (int i = 4; i < 7; ++i) QRAG_RETURN_IF_ERROR(matrices(kLayerMatrices[i], false));
    AppendFloats(out, final_norm);
    // The legacy RoPE tables (run.c skips them; written as model.py's precompute_freqs_cis would).
    const int half = c.head_dim / 2;
    std::vector<float> re(static_cast<size_t>(c.max_seq_len) * half), im(re.size());
    for (int p = 0; p < c.max_seq_len; ++p) {
      for (int i = 0; i < half; ++i) {
        const float f = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * i) / c.head_dim);
        re[p * half + i] = std::cos(p * f);
        im[p * half + i] = std::sin(p * f);
      }
    }
    AppendFloats(out, re);
    AppendFloats(out, im);
    if (!shared) AppendFloats(out, cls);
  } else {
    QRAG_RETURN_IF_ERROR(norms("input_layernorm.weight"));
    QRAG_RETURN_IF_ERROR(norms("post_attention_layernorm.weight"));
    AppendFloats(out, final_norm);
    const bool q8 = options.version == 2;
    if (q8) {
      if (emb.size() % options.group_size != 0) {
        return absl::InvalidArgumentError("embedding size is not a multiple of group_size");
      }
      AppendQ8(out, emb, options.group_size);
    } else {
      AppendFloats(out, emb);
    }
    for (const char* m : kLayerMatrices) QRAG_RETURN_IF_ERROR(matrices(m, q8));
    if (!shared) {
      if (q8) AppendQ8(out, cls, options.group_size); else AppendFloats(out, cls);
    }
  }
  return WriteBytes(path, out);
}

absl::Status WriteHfCheckpoint(const LoadedModel& model, const std::string& dir, const HfWriteOptions& options) {
  const ModelConfig& c = model.config;
  if (options.shards < 1) return absl::InvalidArgumentError("shards must be >= 1");
  const bool permute = c.rope_style == RopeStyle::kInterleaved;
  if (c.rope_scaling.type == RopeScaling::Type::kFrequencyFactors) {
    return absl::UnimplementedError("per-frequency RoPE factors (a GGUF rope_freqs tensor) have no config.json form");
  }

  nlohmann::json config;
  const std::string arch = c.architecture.empty() ? "llama" : c.architecture;
  const std::map<std::string, std::string> class_names = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  if (!class_names.contains(arch)) return absl::InvalidArgumentError(absl::StrCat("architecture ", arch));
  config["architectures"] = {class_names.at(arch)};
  config["model_type"] = arch;
  config["hidden_size"] = c.dim;
  config["intermediate_size"] = c.hidden_dim;
  config["num_hidden_layers"] = c.n_layers;
  config["num_attention_heads"] = c.n_heads;
  config["num_key_value_heads"] = c.n_kv_heads;
  config["head_dim"] = c.head_dim;
  config["vocab_size"] = c.vocab_size;
  config["max_position_embeddings"] = c.max_seq_len;
  config["rms_norm_eps"] = c.norm_eps;
  config["rope_theta"] = c.rope_theta;
  config["hidden_act"] = "silu";
  config["tie_word_embeddings"] = c.tie_embeddings;
  config["torch_dtype"] = options.dtype == HostDType::kF32 ? "float32"
                          : options.dtype == HostDType::kF16 ? "float16" : "bfloat16";
  if (c.bos_token_id >= 0) config["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) config["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) config["eos_token_id"] = c.eos_token_ids;
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    config["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", c.rope_scaling.factor},
                              {"low_freq_factor", c.rope_scaling.low_freq_factor},
                              {"high_freq_factor", c.rope_scaling.high_freq_factor},
                              {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else if (c.rope_scaling.type == RopeScaling::Type::kLinear) {
    config["rope_scaling"] = {{"type", "linear"}, {"factor", c.rope_scaling.factor}};
  } else {
    config["rope_scaling"] = nullptr;
  }
  if (arch == "mistral") {
    config["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  } else if (arch == "qwen2") {
    config["use_sliding_window"] = c.sliding_window > 0;
    config["sliding_window"] = c.sliding_window > 0 ? c.sliding_window : c.max_seq_len;
  } else if (c.qkv_bias) {
    config["attention_bias"] = true;
  }
  QRAG_RETURN_IF_ERROR(WriteBytes(dir + "/config.json", config.dump(2) + "\n"));

  // Tensors in sorted-name order, dealt round-robin by size into shards.
  std::vector<std::string> names;
  for (const auto& [name, t] : model.tensors) names.push_back(name);
  std::sort(names.begin(), names.end());
  std::vector<SafetensorsWriter> writers(options.shards);
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const HostTensor& t = model.tensors.at(name);
    std::vector<float> v = t.ToFloatVector();
    const bool is_qk = name.find("self_attn.q_proj.weight") != std::string::npos ||
                       name.find("self_attn.k_proj.weight") != std::string::npos;
    const bool is_qk_bias = name.find("self_attn.q_proj.bias") != std::string::npos ||
                            name.find("self_attn.k_proj.bias") != std::string::npos;
    if (permute && (is_qk || is_qk_bias)) {
      const int heads = static_cast<int>(t.shape[0] / c.head_dim);
      v = PermuteForRotateHalf(v, heads, c.head_dim, is_qk ? t.shape[1] : 1);
    }
    const int shard = static_cast<int>(i % options.shards);
    QRAG_RETURN_IF_ERROR(writers[shard].Add(name, SafetensorsDTypeName(options.dtype), t.shape, EncodeAs(v, options.dtype)));
    if (options.shards > 1) {
      weight_map[name] = absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, options.shards);
    }
  }
  if (options.shards == 1) {
    writers[0].SetMetadata("format", "pt");
    return writers[0].Write(dir + "/model.safetensors");
  }
  for (int s = 0; s < options.shards; ++s) {
    writers[s].SetMetadata("format", "pt");
    QRAG_RETURN_IF_ERROR(
        writers[s].Write(absl::StrFormat("%s/model-%05d-of-%05d.safetensors", dir, s + 1, options.shards)));
  }
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", weight_map}};
  return WriteBytes(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace qrag::model
