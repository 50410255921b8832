#include "server/model/hf_loader.h"

#include <climits>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/json_util.h"
#include "server/model/safetensors.h"
#include "server/model/quantized_checkpoint.h"

namespace qrag::model {
namespace {

using nlohmann::json;

struct Architecture {
  const char* class_name;  // config.json "architectures"
  const char* model_type;  // config.json "model_type"; ModelConfig::architecture
};
constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};
constexpr char kSupportedList[] =
    "supported: LlamaForCausalLM (model_type \"llama\"), MistralForCausalLM (\"mistral\"), "
    "Qwen2ForCausalLM (\"qwen2\")";

// Typed access to the fields of one JSON object; every error names the source file and the field
// (`prefix` + key, e.g. "rope_scaling.factor").
class Fields {
 public:
  Fields(const json& object, const std::string& source, std::string prefix = "")
      : object_(object), source_(source), prefix_(std::move(prefix)) {}

  absl::Status Bad(absl::string_view key, absl::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", prefix_, key, "': ", problem));
  }
  absl::Status Unsupported(absl::string_view key, absl::string_view problem) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": field '", prefix_, key, "': ", problem));
  }

  // Whether `key` is present (null included).
  bool Has(absl::string_view key) const { return object_.find(std::string(key)) != object_.end(); }

  // The value of `key`, or nullptr when absent or null.
  const json* Find(absl::string_view key) const {
    auto it = object_.find(std::string(key));
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<std::optional<int>> OptionalInt(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    return ToInt(key, *v);
  }
  absl::StatusOr<int> RequiredInt(absl::string_view key) const {
    QRAG_ASSIGN_OR_RETURN(std::optional<int> v, OptionalInt(key));
    if (!v.has_value()) return Bad(key, "missing (required)");
    return *v;
  }
  absl::StatusOr<std::optional<double>> OptionalNumber(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) return Bad(key, absl::StrCat("is ", JsonTypeName(*v), ", expected a number"));
    return v->get<double>();
  }
  absl::StatusOr<double> RequiredNumber(absl::string_view key) const {
    QRAG_ASSIGN_OR_RETURN(std::optional<double> v, OptionalNumber(key));
    if (!v.has_value()) return Bad(key, "missing (required)");
    return *v;
  }
  absl::StatusOr<std::optional<bool>> OptionalBool(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return Bad(key, absl::StrCat("is ", JsonTypeName(*v), ", expected true or false"));
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> OptionalString(absl::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return Bad(key, absl::StrCat("is ", JsonTypeName(*v), ", expected a string"));
    return v->get<std::string>();
  }

  absl::StatusOr<int> ToInt(absl::string_view key, const json& v) const {
    if (!v.is_number_integer()) return Bad(key, absl::StrCat("is ", JsonTypeName(v), ", expected an integer"));
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(INT_MAX)) return Bad(key, "integer out of range");
      return static_cast<int>(v.get<uint64_t>());
    }
    const int64_t i = v.get<int64_t>();
    if (i < INT_MIN || i > INT_MAX) return Bad(key, "integer out of range");
    return static_cast<int>(i);
  }

 private:
  const json& object_;
  const std::string& source_;
  std::string prefix_;
};

const Architecture* FindByClass(absl::string_view name) {
  for (const Architecture& a : kArchitectures) {
    if (name == a.class_name) return &a;
  }
  return nullptr;
}

const Architecture* FindByModelType(absl::string_view name) {
  for (const Architecture& a : kArchitectures) {
    if (name == a.model_type) return &a;
  }
  return nullptr;
}

absl::StatusOr<const Architecture*> ParseArchitecture(const Fields& f, const std::string& source) {
  const Architecture* from_class = nullptr;
  std::string class_name;
  if (const json* archs = f.Find("architectures"); archs != nullptr) {
    if (!archs->is_array()) {
      return f.Bad("architectures", absl::StrCat("is ", JsonTypeName(*archs), ", expected a list of strings"));
    }
    if (!archs->empty()) {
      const json& first = (*archs)[0];
      if (!first.is_string()) {
        return f.Bad("architectures", absl::StrCat("[0] is ", JsonTypeName(first), ", expected a string"));
      }
      class_name = first.get<std::string>();
      from_class = FindByClass(class_name);
      if (from_class == nullptr) {
        return absl::UnimplementedError(absl::StrCat(source, ": architecture '", class_name,
                                                     "' is not supported (", kSupportedList, ")"));
      }
    }
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> model_type, f.OptionalString("model_type"));
  const Architecture* from_type = nullptr;
  if (model_type.has_value()) {
    from_type = FindByModelType(*model_type);
    if (from_type == nullptr) {
      return absl::UnimplementedError(absl::StrCat(source, ": model_type '", *model_type,
                                                   "' is not supported (", kSupportedList, ")"));
    }
  }
  if (from_class == nullptr && from_type == nullptr) {
    return f.Bad("architectures", absl::StrCat("missing, and so is 'model_type' (", kSupportedList, ")"));
  }
  if (from_class != nullptr && from_type != nullptr && from_class != from_type) {
    return f.Bad("model_type", absl::StrCat("'", *model_type, "' contradicts architectures[0] '", class_name,
                                            "'"));
  }
  return from_class != nullptr ? from_class : from_type;
}

// The RoPE scaling object under `field` ("rope_scaling", or transformers 5's "rope_parameters").
absl::Status ParseRopeScaling(const Fields& top, const char* field, const json& object, const std::string& source,
                              RopeScaling* out) {
  if (!object.is_object()) {
    return top.Bad(field, absl::StrCat("is ", JsonTypeName(object), ", expected an object or null"));
  }
  Fields f(object, source, absl::StrCat(field, "."));
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> rope_type, f.OptionalString("rope_type"));
  const char* type_key = "rope_type";
  if (!rope_type.has_value()) {
    QRAG_ASSIGN_OR_RETURN(rope_type, f.OptionalString("type"));
    type_key = "type";
  }
  if (!rope_type.has_value()) return f.Bad("rope_type", "missing (neither 'rope_type' nor 'type' is set)");

  *out = RopeScaling();
  if (*rope_type == "default") return absl::OkStatus();
  if (*rope_type == "linear") {
    out->type = RopeScaling::Type::kLinear;
    QRAG_ASSIGN_OR_RETURN(double factor, f.RequiredNumber("factor"));
    out->factor = static_cast<float>(factor);
    return absl::OkStatus();
  }
  if (*rope_type == "llama3") {
    out->type = RopeScaling::Type::kLlama3;
    QRAG_ASSIGN_OR_RETURN(double factor, f.RequiredNumber("factor"));
    QRAG_ASSIGN_OR_RETURN(double low, f.RequiredNumber("low_freq_factor"));
    QRAG_ASSIGN_OR_RETURN(double high, f.RequiredNumber("high_freq_factor"));
    QRAG_ASSIGN_OR_RETURN(out->original_max_position_embeddings,
                          f.RequiredInt("original_max_position_embeddings"));
    out->factor = static_cast<float>(factor);
    out->low_freq_factor = static_cast<float>(low);
    out->high_freq_factor = static_cast<float>(high);
    // The llama3 formula interpolates between the two wavelength bounds; it divides by (high - low).
    if (!(low > 0) || !(high > low)) {
      return f.Bad("high_freq_factor", absl::StrCat("llama3 scaling needs 0 < low_freq_factor (", low,
                                                    ") < high_freq_factor (", high, ")"));
    }
    if (out->original_max_position_embeddings <= 0) {
      return f.Bad("original_max_position_embeddings", "must be positive");
    }
    return absl::OkStatus();
  }
  return f.Unsupported(type_key, absl::StrCat("RoPE scaling type '", *rope_type,
                                              "' is not supported (supported: default, linear, llama3)"));
}

absl::Status ParseEos(const Fields& f, std::vector<int>* out) {
  out->clear();
  const json* v = f.Find("eos_token_id");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_array()) {
    for (const json& e : *v) {
      QRAG_ASSIGN_OR_RETURN(int id, f.ToInt("eos_token_id", e));
      out->push_back(id);
    }
    return absl::OkStatus();
  }
  if (!v->is_number_integer()) {
    return f.Bad("eos_token_id", absl::StrCat("is ", JsonTypeName(*v), ", expected an integer or a list"));
  }
  QRAG_ASSIGN_OR_RETURN(int id, f.ToInt("eos_token_id", *v));
  out->push_back(id);
  return absl::OkStatus();
}

absl::StatusOr<int> ParseSlidingWindow(const Fields& f, const std::string& arch, int n_layers) {
  if (arch == "mistral") {
    // MistralConfig's default is 4096; an explicit null turns it off.
    if (!f.Has("sliding_window")) return 4096;
    QRAG_ASSIGN_OR_RETURN(std::optional<int> w, f.OptionalInt("sliding_window"));
    return w.value_or(0);
  }
  if (arch == "qwen2") {
    QRAG_ASSIGN_OR_RETURN(std::optional<bool> use, f.OptionalBool("use_sliding_window"));
    if (!use.value_or(false)) return 0;
    QRAG_ASSIGN_OR_RETURN(std::optional<int> w, f.OptionalInt("sliding_window"));
    if (!w.has_value()) return f.Bad("sliding_window", "missing while use_sliding_window is true");
    // transformers: layer i slides iff use_sliding_window and i >= max_window_layers (default 28).
    QRAG_ASSIGN_OR_RETURN(std::optional<int> mwl, f.OptionalInt("max_window_layers"));
    const int max_window_layers = mwl.value_or(28);
    if (max_window_layers >= n_layers) return 0;
    if (max_window_layers > 0) {
      return f.Unsupported("max_window_layers",
                           absl::StrCat(max_window_layers, ": sliding-window attention on only some layers (",
                                        max_window_layers, " of ", n_layers,
                                        " use full attention) is not supported"));
    }
    return *w;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source) {
  QRAG_ASSIGN_OR_RETURN(json j, ParseJson(json_text, source));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": config is ", JsonTypeName(j), ", expected a JSON object"));
  }
  Fields f(j, source);
  ModelConfig c;
  QRAG_ASSIGN_OR_RETURN(const Architecture* arch, ParseArchitecture(f, source));
  c.architecture = arch->model_type;

  if (f.Find("quantization_config") != nullptr) {
    return f.Unsupported("quantization_config",
                         "quantized Hugging Face checkpoints are not supported; use the bf16/fp16/fp32 "
                         "checkpoint (qrag quantizes it itself)");
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> act, f.OptionalString("hidden_act"));
  if (act.has_value() && *act != "silu") {
    return f.Unsupported("hidden_act", absl::StrCat("'", *act, "' is not supported (only silu)"));
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<bool> mlp_bias, f.OptionalBool("mlp_bias"));
  if (mlp_bias.value_or(false)) return f.Unsupported("mlp_bias", "MLP biases are not supported");

  QRAG_ASSIGN_OR_RETURN(c.dim, f.RequiredInt("hidden_size"));
  QRAG_ASSIGN_OR_RETURN(c.hidden_dim, f.RequiredInt("intermediate_size"));
  QRAG_ASSIGN_OR_RETURN(c.n_layers, f.RequiredInt("num_hidden_layers"));
  QRAG_ASSIGN_OR_RETURN(c.n_heads, f.RequiredInt("num_attention_heads"));
  QRAG_ASSIGN_OR_RETURN(std::optional<int> kv_heads, f.OptionalInt("num_key_value_heads"));
  c.n_kv_heads = kv_heads.value_or(c.n_heads);
  QRAG_ASSIGN_OR_RETURN(std::optional<int> head_dim, f.OptionalInt("head_dim"));
  if (head_dim.has_value()) {
    c.head_dim = *head_dim;
  } else if (c.n_heads > 0) {  // n_heads <= 0 is reported by ValidateModelConfig
    if (c.dim % c.n_heads != 0) {
      return f.Bad("num_attention_heads", absl::StrCat(c.n_heads, " does not divide hidden_size ", c.dim,
                                                       " and head_dim is not given"));
    }
    c.head_dim = c.dim / c.n_heads;
  }
  QRAG_ASSIGN_OR_RETURN(c.vocab_size, f.RequiredInt("vocab_size"));
  QRAG_ASSIGN_OR_RETURN(c.max_seq_len, f.RequiredInt("max_position_embeddings"));
  QRAG_ASSIGN_OR_RETURN(std::optional<double> eps, f.OptionalNumber("rms_norm_eps"));
  c.norm_eps = static_cast<float>(eps.value_or(1e-6));
  // RoPE: top-level "rope_theta" and "rope_scaling" (transformers < 5), or "rope_parameters" {"rope_theta",
  // "rope_type", scaling fields} (transformers >= 5 writes only that; ignoring it silently ran SmolLM2 with
  // theta 10000 instead of 100000).
  QRAG_ASSIGN_OR_RETURN(std::optional<double> theta, f.OptionalNumber("rope_theta"));
  c.rope_style = RopeStyle::kRotateHalf;
  if (const json* rp = f.Find("rope_parameters"); rp != nullptr) {
    if (!rp->is_object()) {
      return f.Bad("rope_parameters", absl::StrCat("is ", JsonTypeName(*rp), ", expected an object or null"));
    }
    Fields p(*rp, source, "rope_parameters.");
    if (!p.Has("rope_theta") && !p.Has("rope_type") && !p.Has("type")) {
      return f.Unsupported("rope_parameters", "RoPE parameters per layer type (e.g. full_attention / "
                                              "sliding_attention) are not supported");
    }
    QRAG_ASSIGN_OR_RETURN(std::optional<double> p_theta, p.OptionalNumber("rope_theta"));
    if (p_theta.has_value() && theta.has_value() && *p_theta != *theta) {
      return p.Bad("rope_theta", absl::StrCat(*p_theta, " contradicts the top-level rope_theta ", *theta));
    }
    if (p_theta.has_value()) theta = p_theta;
    if (f.Find("rope_scaling") != nullptr) {
      return f.Bad("rope_scaling", "set together with rope_parameters (transformers >= 5 writes rope_parameters "
                                   "alone): keep one");
    }
    if (p.Has("rope_type") || p.Has("type")) {
      QRAG_RETURN_IF_ERROR(ParseRopeScaling(f, "rope_parameters", *rp, source, &c.rope_scaling));
    }
  } else if (const json* rs = f.Find("rope_scaling"); rs != nullptr) {
    QRAG_RETURN_IF_ERROR(ParseRopeScaling(f, "rope_scaling", *rs, source, &c.rope_scaling));
  }
  c.rope_theta = static_cast<float>(theta.value_or(10000.0));
  if (!(c.rope_theta > 0)) return f.Bad("rope_theta", "must be > 0");

  // Settings that change the math and that qrag does not implement: refused with the key, never ignored.
  QRAG_ASSIGN_OR_RETURN(std::optional<double> rotary_fraction, f.OptionalNumber("partial_rotary_factor"));
  if (rotary_fraction.has_value() && *rotary_fraction != 1.0) {
    return f.Unsupported("partial_rotary_factor", "RoPE on part of each head is not supported");
  }
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    if (f.Find(key) != nullptr) return f.Unsupported(key, "logit soft-capping is not supported");
  }
  for (const char* key : {"logits_scaling", "embedding_multiplier", "residual_multiplier", "attention_multiplier"}) {
    QRAG_ASSIGN_OR_RETURN(std::optional<double> m, f.OptionalNumber(key));
    if (m.has_value() && *m != 1.0) return f.Unsupported(key, "scaling multipliers (Granite) are not supported");
  }
  for (const char* key : {"use_qk_norm", "qk_layernorm"}) {
    QRAG_ASSIGN_OR_RETURN(std::optional<bool> on, f.OptionalBool(key));
    if (on.value_or(false)) return f.Unsupported(key, "query/key normalization is not supported");
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<bool> tie, f.OptionalBool("tie_word_embeddings"));
  c.tie_embeddings = tie.value_or(false);

  QRAG_ASSIGN_OR_RETURN(std::optional<bool> attention_bias, f.OptionalBool("attention_bias"));
  if (c.architecture == "mistral" && attention_bias.value_or(false)) {
    return f.Unsupported("attention_bias", "attention biases on a Mistral model are not supported");
  }
  c.qkv_bias = c.architecture == "qwen2" || (c.architecture == "llama" && attention_bias.value_or(false));

  QRAG_ASSIGN_OR_RETURN(c.sliding_window, ParseSlidingWindow(f, c.architecture, c.n_layers));

  QRAG_ASSIGN_OR_RETURN(std::optional<int> bos, f.OptionalInt("bos_token_id"));
  c.bos_token_id = bos.value_or(-1);
  QRAG_RETURN_IF_ERROR(ParseEos(f, &c.eos_token_ids));

  QRAG_RETURN_IF_ERROR(ValidateModelConfig(c, source));
  return c;
}

absl::StatusOr<LoadedModel> LoadHfCheckpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory (a Hugging Face checkpoint is a "
                                            "directory with config.json and safetensors weights)"));
  }
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat(config_path, ": not found (a Hugging Face checkpoint "
                                            "directory needs config.json)"));
  }
  QRAG_ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(config_path));

  LoadedModel model;
  model.source = dir;
  QRAG_ASSIGN_OR_RETURN(model.config, ParseHfConfig(config_text, config_path));

  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();
  absl::StatusOr<SafetensorsCheckpoint> weights;
  if (fs::exists(index_path, ec)) {
    weights = SafetensorsCheckpoint::OpenIndex(index_path);
  } else if (fs::exists(single_path, ec)) {
    weights = SafetensorsCheckpoint::OpenFile(single_path);
  } else {
    std::string found_bin;
    for (const char* bin : {"pytorch_model.bin", "pytorch_model.bin.index.json", "model.bin"}) {
      if (fs::exists(fs::path(dir) / bin, ec)) found_bin = absl::StrCat(" (found ", bin, ")");
    }
    return absl::NotFoundError(absl::StrCat(
        dir, ": no safetensors weights: looked for model.safetensors.index.json and model.safetensors. "
        "PyTorch .bin checkpoints are not supported", found_bin,
        "; convert them to safetensors (e.g. save_pretrained(..., safe_serialization=True))"));
  }
  if (!weights.ok()) return weights.status();

  for (const std::string& name : weights->Names()) {
    SafetensorsCheckpoint::Entry e = weights->Find(name);
    absl::StatusOr<HostTensor> t = e.file->ToHostTensor(*e.info);
    if (!t.ok()) {
      // Buffers such as position ids may have any dtype; a weight the model needs may not.
      if (absl::EndsWith(name, ".weight")) return t.status();
      continue;
    }
    // The transformer has no output-projection bias; dropping it would silently change the outputs.
    if (absl::EndsWith(name, ".self_attn.o_proj.bias")) {
      return absl::UnimplementedError(
          absl::StrCat(e.file->path(), ": tensor '", name,
                       "': attention output-projection biases are not supported (config.json attention_bias "
                       "is only supported for the q/k/v projections)"));
    }
    model.tensors.emplace(name, *std::move(t));
  }
  QRAG_RETURN_IF_ERROR(model::AttachQuantizedTensors(*weights, &model));
  return model;
}

}  // namespace qrag::model
