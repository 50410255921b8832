// GGUF checkpoints (gguf.h) of the architectures `llama` (Llama 1/2/3, SmolLM, TinyLlama, Mistral) and `qwen2`,
// turned into what every loader produces (host_tensor.h LoadedModel: HF Llama tensor names, fp32/f16/bf16
// tensors).
//
// Config (keys prefixed by the architecture, e.g. `llama.`):
//   embedding_length -> dim, feed_forward_length -> hidden_dim, block_count -> n_layers,
//   attention.head_count -> n_heads, context_length -> max_seq_len,
//   attention.layer_norm_rms_epsilon -> norm_eps                         (all required)
//   attention.head_count_kv -> n_kv_heads (default n_heads); attention.key_length -> head_dim (default
//   dim / n_heads; value_length must equal it); rope.dimension_count must equal head_dim (partial rotary is
//   UNIMPLEMENTED); rope.freq_base -> rope_theta (default 10000); rope.scaling.type none | linear (with
//   rope.scaling.factor; also the older rope.scale_linear), anything else UNIMPLEMENTED; a `rope_freqs.weight`
//   tensor (Llama 3.1/3.2) -> per-frequency factors; vocab_size (default: the token list's length);
//   expert_count > 0 is UNIMPLEMENTED. tie_embeddings when there is no `output.weight`; qkv_bias for qwen2
//   (and for llama when blk.0.attn_q.bias exists). bos/eos from tokenizer.ggml.bos_token_id,
//   eos_token_id and eot_token_id.
//
// RoPE layout: llama.cpp's converter permutes the q/k rows of `llama` models from the Hugging Face order
// (pairs (i, i + d/2) per head, "rotate half") back to Meta's interleaved order (pairs (2i, 2i + 1)), and
// runs them with interleaved RoPE (LLAMA_ROPE_TYPE_NORM); `qwen2` is not permuted and runs rotate-half
// (LLAMA_ROPE_TYPE_NEOX). Since a permutation shared by q and k leaves every q.k product unchanged, the
// weights are kept as stored and rope_style says which pairing they need: kInterleaved for llama,
// kRotateHalf for qwen2 (checked against an independent numpy forward: tests/model/make_gguf_forward_gold.py).
//
// Tensors: F32 / F16 / BF16 are zero-copy views of the mapping; block formats are dequantized to owned fp32
// buffers (bit-exactly, quant/gguf_blocks.h). Every tensor of the file must be one the model uses
// (UNIMPLEMENTED naming it otherwise, so that nothing that changes the math is ignored).
//
// Errors name the file and the key or tensor: UNIMPLEMENTED for another architecture (naming it), an
// unsupported feature or tensor type; INVALID_ARGUMENT for a missing required key or a value of the wrong
// type or range; the reader's errors (gguf.h).
#ifndef QRAG_SERVER_MODEL_GGUF_LOADER_H_
#define QRAG_SERVER_MODEL_GGUF_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/model/gguf.h"
#include "server/model/host_tensor.h"
#include "server/model/model_config.h"

namespace qrag::model {

// The config of `file` (validated with ValidateModelConfig).
absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& file);

// Loads the model in `file` (config + tensors under HF names). LoadedModel::source is file.source().
absl::StatusOr<LoadedModel> LoadGgufModel(const GgufFile& file);

// GgufFile::Open(path), then LoadGgufModel.
absl::StatusOr<LoadedModel> LoadGgufCheckpoint(const std::string& path);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_GGUF_LOADER_H_
