// A BERT-family sentence encoder (e.g. sentence-transformers/all-MiniLM-L6-v2), written once against
// Backend: Hugging Face BertModel weights (config.json + model.safetensors, names with or without the
// "bert." prefix), the WordPiece tokenizer of the same directory, and the sentence-transformers head read
// from the directory (1_Pooling/config.json: mean or CLS pooling; modules.json: a Normalize module means
// L2-normalized outputs; sentence_bert_config.json: max_seq_length).
//
// Forward per packed batch of sequences ([CLS] tokens [SEP], token type 0):
//   x = LayerNorm(word_emb[id] + pos_emb[p] + type_emb[0])
//   per layer: a = EncoderAttention(x Wq, x Wk, x Wv); x = LayerNorm(x + a Wo);
//              x = LayerNorm(x + GELU(x Wi) Wo2)
//   pooled = mean of x over the sequence's tokens (or x[CLS]); then / ||pooled||_2 when normalizing.
// The linear layers run in the encoder's Precision (fp32, bf16, fp8, int8 with the backend's GEMMs);
// embeddings, LayerNorm, attention and pooling stay fp32.
//
// Thread safety: Embed* may be called from several threads; calls are serialized on an internal mutex
// because a Backend is used by one thread at a time. Give the encoder its own Backend (not the engine's).
#ifndef QRAG_SERVER_MODEL_BERT_ENCODER_H_
#define QRAG_SERVER_MODEL_BERT_ENCODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"
#include "server/model/wordpiece_tokenizer.h"
#include "server/quant/emulated_scheme.h"

namespace qrag::model {

struct BertEncoderOptions {
  backend::Precision precision = backend::Precision::kF32;
  int max_seq_length = 0;        // tokens incl. [CLS]/[SEP]; 0: sentence_bert_config.json, else the model's
  int max_batch_tokens = 8192;   // tokens per forward pass (a longer single sequence still runs alone)
  // Applied to every linear layer's fp32 weight before it is uploaded in `precision` (the emulated schemes
  // of quant/emulated_scheme.h: Log 4.3 and 2:4 weights served through fp32 GEMMs). Null: none.
  quant::WeightTransform weight_transform;
};

struct BertConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int max_position_embeddings = 0;
  int type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;
};

class BertEncoder {
 public:
  // Loads `dir`. Errors name the file: NOT_FOUND for missing files/tensors, INVALID_ARGUMENT for shapes
  // or configs that do not fit, UNIMPLEMENTED for an activation other than gelu, absolute position
  // embeddings or a pooling mode other than mean/CLS.
  static absl::StatusOr<std::unique_ptr<BertEncoder>> Load(const std::string& dir, backend::Backend* backend,
                                                           const BertEncoderOptions& options);
  ~BertEncoder();

  const BertConfig& config() const { return config_; }
  int dim() const { return config_.hidden_size; }
  // Token limit per sequence including [CLS] and [SEP].
  int max_seq_length() const { return max_seq_length_; }
  backend::Precision precision() const { return options_.precision; }
  const WordPieceTokenizer& tokenizer() const { return *tokenizer_; }
  // "<directory name>@<16 hex digits of a hash of model.safetensors>": equal for the same weights.
  const std::string& model_id() const { return model_id_; }
  bool normalize() const { return normalize_; }

  // Embeddings of `texts`, row-major [texts.size(), dim()]. Each text is tokenized and truncated to
  // max_seq_length() - 2 tokens. INVALID_ARGUMENT for invalid UTF-8 (naming the text's index).
  // `tokens`, when set, receives the tokens encoded (CLS and SEP included, after truncation), for usage.
  absl::StatusOr<std::vector<float>> Embed(absl::Span<const std::string> texts, int64_t* tokens = nullptr);
  // Embeddings of already tokenized sequences (ids without [CLS]/[SEP], at most max_seq_length() - 2 each;
  // INVALID_ARGUMENT otherwise or for ids out of the vocabulary).
  absl::StatusOr<std::vector<float>> EmbedTokens(absl::Span<const std::vector<int32_t>> sequences);

  // Multiply-add ops done by all forward passes so far (2*M*N*K per GEMM + attention).
  int64_t ops_total() const;

 private:
  struct Layer;
  BertEncoder() = default;
  // One forward pass over sequences [begin, end) of `seqs`; writes rows of `out`.
  absl::Status Forward(absl::Span<const std::vector<int32_t>> seqs, float* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  BertConfig config_;
  BertEncoderOptions options_;
  int max_seq_length_ = 0;
  bool mean_pooling_ = true;
  bool normalize_ = true;
  std::string model_id_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  backend::Backend* backend_ = nullptr;
  backend::DeviceBuffer word_emb_, pos_emb_, type_emb_, emb_ln_w_, emb_ln_b_;
  std::vector<Layer> layers_;
  mutable absl::Mutex mu_;
  int64_t ops_ ABSL_GUARDED_BY(mu_) = 0;
  // Activations of a forward pass, kept between passes (grown when a pass needs more tokens): allocating
  // (and zeroing) tens of MB per batch cost about 5% of the encoder's time on the CPU backend.
  struct Workspace {
    int tokens = 0;
    backend::DeviceBuffer x, tmp, q, k, v, ff;
  };
  Workspace ws_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_BERT_ENCODER_H_
