// The Llama-family decoder (Llama 1/2/3, Mistral, Qwen2), written once against backend::Backend:
// RMSNorm -> q/k/v projections (+bias for Qwen2) -> RoPE -> paged grouped-query attention -> output
// projection -> residual; RMSNorm -> SwiGLU FFN (gate, up, down) -> residual; final RMSNorm -> classifier.
//
// Weights are converted at Create time to the requested precision (backend/precision.h). The model holds
// no per-sequence state: the KV cache and the block tables are passed in, so one Transformer serves any
// number of sequences in a batch. Not thread-safe (one engine thread drives it).
#ifndef QRAG_SERVER_MODEL_TRANSFORMER_H_
#define QRAG_SERVER_MODEL_TRANSFORMER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"
#include "server/model/forward_stats.h"
#include "server/model/host_tensor.h"
#include "server/model/kv_cache.h"
#include "server/model/model_config.h"

namespace qrag::model {

struct TransformerOptions {
  backend::Precision precision = backend::Precision::kF32;
  // The classifier's (vocabulary projection's) GEMM; unset: DefaultClassifierPrecision(precision).
  std::optional<backend::Precision> classifier_precision;
};

// `precision`, except w4 -> int8: a 4-bit classifier costs more accuracy than all 4-bit decoder layers
// together (docs/quantization.md: SmolLM2 +5.6% perplexity from the classifier alone), so w4 keeps it at
// 8 bits, as llama.cpp's 4-bit files keep their output matrix at 6-8 bits.
backend::Precision DefaultClassifierPrecision(backend::Precision precision);

// Tensor ops done so far, by precision of the GEMM that did them (attention is counted as fp32 here:
// it runs on fp32 activations).
struct OpCounts {
  std::array<int64_t, backend::kNumPrecisions> by_precision{};  // indexed by backend::Precision
  int64_t total() const;
};

class Transformer {
 public:
  // Validates that every tensor the config requires is present with the right shape (naming the file
  // and tensor otherwise) and uploads the weights.
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(const LoadedModel& model,
                                                             backend::Backend* backend,
                                                             const TransformerOptions& options);
  ~Transformer();

  // One step over a flattened batch. `tokens[i]` sits at attention.positions[i] of sequence
  // attention.token_seq[i]; the cache blocks of every position up to it must be in the block tables.
  // Writes the logits of the tokens listed in `logits_for` (indices into tokens) to
  // logits_out[j * vocab_size ...] (host memory). Token ids must be < vocab_size (INVALID_ARGUMENT).
  absl::Status Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& attention,
                       absl::Span<const int32_t> logits_for, KvCache& cache, float* logits_out);

  const ModelConfig& config() const { return config_; }
  backend::Precision precision() const { return options_.precision; }
  const OpCounts& ops() const { return ops_; }
  // The exact ops of the last successful Forward, in total and per sequence of its batch.
  const ForwardStats& last_forward() const { return last_forward_; }
  // Bytes of weights one decode step reads (every linear layer and the final norm; the embedding row
  // gather excluded), in the stored precision, scales included.
  int64_t weight_bytes_per_token() const { return weight_bytes_per_token_; }
  backend::Backend* backend() const { return backend_; }

 private:
  struct Layer;
  Transformer(const ModelConfig& config, backend::Backend* backend, const TransformerOptions& options);
  absl::Status EnsureScratch(int tokens);

  ModelConfig config_;
  backend::Backend* backend_;
  TransformerOptions options_;
  backend::DeviceBuffer embedding_;   // [vocab, dim] fp32
  backend::DeviceBuffer final_norm_;  // [dim]
  backend::DeviceBuffer inv_freq_;    // [head_dim / 2]
  backend::Weight classifier_;        // [vocab, dim]
  std::vector<std::unique_ptr<Layer>> layers_;
  int64_t weight_bytes_per_token_ = 0;
  OpCounts ops_;
  ForwardStats last_forward_;

  // Activations for up to scratch_tokens_ tokens.
  int scratch_tokens_ = 0;
  backend::DeviceBuffer x_, xb_, q_, k_, v_, att_, gate_, up_, logits_;
};

// Inverse RoPE frequencies for each pair i < head_dim/2: 1 / theta^(2i / head_dim), with the config's
// rope_scaling applied (Llama-3 frequency bands, linear, or per-frequency factors).
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_TRANSFORMER_H_
