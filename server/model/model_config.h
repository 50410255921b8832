// The decoder's hyper-parameters, whatever checkpoint format they came from.
#ifndef QRAG_SERVER_MODEL_MODEL_CONFIG_H_
#define QRAG_SERVER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace qrag::model {

// How RoPE pairs the dimensions of a head.
//  - kInterleaved: pairs (2i, 2i+1), as llama2.c and Meta's original Llama code.
//  - kRotateHalf: pairs (i, i + head_dim/2), as Hugging Face transformers. HF checkpoints carry q/k
//    projection rows permuted so that rotate-half on them equals interleaved on the original weights.
enum class RopeStyle { kInterleaved, kRotateHalf };

// rope_scaling of config.json. kLlama3 is Llama-3.1/3.2's frequency-dependent scaling; kLinear divides
// positions by `factor`; kFrequencyFactors divides the frequency of pair i by freq_factors[i] (llama.cpp's
// `rope_freqs.weight` tensor, which GGUF files of Llama 3.1/3.2 carry instead of the llama3 parameters).
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3, kFrequencyFactors };
  Type type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
  std::vector<float> freq_factors;  // kFrequencyFactors: head_dim / 2 divisors, each > 0
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral" or "qwen2"
  int dim = 0;               // hidden size
  int hidden_dim = 0;        // FFN intermediate size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;          // usually dim / n_heads
  int vocab_size = 0;
  int max_seq_len = 0;       // context length served
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;  // the classifier reuses the token-embedding matrix
  bool qkv_bias = false;        // Qwen2 adds biases to the q, k and v projections
  int sliding_window = 0;       // 0: full attention; else each token sees the last `sliding_window` positions
  // Special tokens from the checkpoint (-1 / empty when it names none; the tokenizer may know them).
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Checks that the numbers are positive and consistent (heads divide, head_dim even, ...). The message
// names `source` (the file the config came from) and the field at fault.
absl::Status ValidateModelConfig(const ModelConfig& config, const std::string& source);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_MODEL_CONFIG_H_
