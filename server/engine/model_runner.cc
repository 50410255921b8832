#include "server/engine/model_runner.h"

#include "server/common/status.h"

namespace qrag::engine {

std::vector<int32_t> TransformerRunner::eos_ids() const { return transformer_->config().eos_token_ids; }

absl::Status TransformerRunner::AllocateCache(int num_blocks, int block_size) {
  cache_.reset();  // free the old one first: both may not fit at once
  model::KvCacheOptions o;
  o.num_blocks = num_blocks;
  o.block_size = block_size;
  QRAG_ASSIGN_OR_RETURN(model::KvCache cache, model::KvCache::Create(transformer_->backend(), transformer_->config(), o));
  cache_ = std::make_unique<model::KvCache>(std::move(cache));
  return absl::OkStatus();
}

absl::Status TransformerRunner::Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& batch,
                                        absl::Span<const int32_t> logits_for, float* logits_out) {
  if (cache_ == nullptr) return absl::FailedPreconditionError("model runner: AllocateCache was not called");
  // The engine builds batches without knowing the model; the window (Mistral, Qwen2) is the model's.
  backend::AttentionBatch windowed = batch;
  windowed.sliding_window = transformer_->config().sliding_window;
  return transformer_->Forward(tokens, windowed, logits_for, *cache_, logits_out);
}

}  // namespace qrag::engine
