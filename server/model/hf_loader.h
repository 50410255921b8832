// Hugging Face Llama-family checkpoints: a directory with config.json and safetensors weights
// (model.safetensors, or model.safetensors.index.json + shards), as `save_pretrained` writes them.
//
// Supported architectures: LlamaForCausalLM ("llama"), MistralForCausalLM ("mistral"),
// Qwen2ForCausalLM ("qwen2"). PyTorch .bin checkpoints are not read: convert them to safetensors.
#ifndef QRAG_SERVER_MODEL_HF_LOADER_H_
#define QRAG_SERVER_MODEL_HF_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/model/host_tensor.h"
#include "server/model/model_config.h"

namespace qrag::model {

// Parses the text of a config.json into a ModelConfig and validates it (ValidateModelConfig). `source`
// (the file's path) prefixes every message.
//
// Mapping (transformers' defaults where a field is optional):
//   architectures[0] / model_type -> architecture ("llama", "mistral", "qwen2"; both, when present, must
//     name a supported one and agree; otherwise UNIMPLEMENTED listing the supported ones)
//   hidden_size -> dim, intermediate_size -> hidden_dim, num_hidden_layers -> n_layers,
//   num_attention_heads -> n_heads, vocab_size -> vocab_size (all required)
//   num_key_value_heads -> n_kv_heads (default n_heads), head_dim (default hidden_size / heads)
//   max_position_embeddings -> max_seq_len (required), rms_norm_eps -> norm_eps (default 1e-6)
//   rope_theta (default 10000); rope_scaling: null, {"rope_type"|"type": "default"}, "linear" (factor),
//     "llama3" (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings); any other
//     type is UNIMPLEMENTED
//   tie_word_embeddings (default false); qkv_bias: always for qwen2, attention_bias for llama
//   sliding_window: mistral: int, or null for none (default 4096); qwen2: only when use_sliding_window is
//     true (and every layer slides, i.e. max_window_layers is 0; when max_window_layers >= layers no layer
//     slides; a mix is UNIMPLEMENTED); llama: 0
//   bos_token_id: int or null; eos_token_id: int, list of ints or null
//   rope_style is always kRotateHalf.
// Also UNIMPLEMENTED: hidden_act other than "silu", mlp_bias, a quantization_config.
// A missing required field or a field of the wrong JSON type is INVALID_ARGUMENT naming `source` and the
// field.
absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text, const std::string& source);

// Loads the checkpoint in directory `dir`: config.json (ParseHfConfig), then the weights from
// model.safetensors.index.json and its shards if present, else from model.safetensors. Every F32 / F16 /
// BF16 tensor goes into LoadedModel::tensors under its name, as a zero-copy view of the mapped file.
// Tensors of other dtypes are skipped, except that a tensor whose name ends in ".weight" is UNIMPLEMENTED
// (naming it and its dtype), since the model would be missing it. LoadedModel::source is `dir`.
// Errors: NOT_FOUND when `dir` or config.json is missing, or when neither safetensors file exists (the
// message lists the files looked for and says .bin checkpoints must be converted); every error of
// ParseHfConfig and of SafetensorsCheckpoint::OpenFile / OpenIndex.
absl::StatusOr<LoadedModel> LoadHfCheckpoint(const std::string& dir);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_HF_LOADER_H_
