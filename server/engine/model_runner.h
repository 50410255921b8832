// What the engine needs of a model: one batched forward step over a paged KV cache it does not own the
// layout of. The real implementation wraps model::Transformer + model::KvCache; tests use a fake.
#ifndef QRAG_SERVER_ENGINE_MODEL_RUNNER_H_
#define QRAG_SERVER_ENGINE_MODEL_RUNNER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"
#include "server/model/kv_cache.h"
#include "server/model/transformer.h"

namespace qrag::engine {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual int vocab_size() const = 0;
  virtual int max_seq_len() const = 0;
  // Token ids the model itself ends generation on (config eos ids).
  virtual std::vector<int32_t> eos_ids() const = 0;
  // (Re)creates the KV cache with `num_blocks` blocks of `block_size` positions.
  virtual absl::Status AllocateCache(int num_blocks, int block_size) = 0;
  // One step (see model::Transformer::Forward); logits for `logits_for` rows into logits_out (host).
  virtual absl::Status Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& batch,
                               absl::Span<const int32_t> logits_for, float* logits_out) = 0;
  // The exact tensor ops of the last successful Forward (model::ForwardStats, per sequence of its batch), or
  // null when this runner does not count ops (test fakes).
  virtual const model::ForwardStats* last_forward() const { return nullptr; }
};

// ModelRunner over a real Transformer (which it does not own).
class TransformerRunner final : public ModelRunner {
 public:
  explicit TransformerRunner(model::Transformer* transformer) : transformer_(transformer) {}
  int vocab_size() const override { return transformer_->config().vocab_size; }
  int max_seq_len() const override { return transformer_->config().max_seq_len; }
  std::vector<int32_t> eos_ids() const override;
  absl::Status AllocateCache(int num_blocks, int block_size) override;
  absl::Status Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& batch,
                       absl::Span<const int32_t> logits_for, float* logits_out) override;
  const model::ForwardStats* last_forward() const override { return &transformer_->last_forward(); }

 private:
  model::Transformer* transformer_;
  std::unique_ptr<model::KvCache> cache_;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_MODEL_RUNNER_H_
