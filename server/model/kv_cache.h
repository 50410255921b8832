// The paged key/value cache memory of one model on one backend: for every layer, `num_blocks` blocks of
// `block_size` token rows (n_kv_heads * head_dim floats each) for keys and for values. Which blocks belong
// to which sequence is decided by the caller (the engine's block manager) and passed to the model as
// block tables (backend::AttentionBatch).
#ifndef QRAG_SERVER_MODEL_KV_CACHE_H_
#define QRAG_SERVER_MODEL_KV_CACHE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "server/backend/backend.h"
#include "server/model/model_config.h"

namespace qrag::model {

struct KvCacheOptions {
  int num_blocks = 0;
  int block_size = 16;
};

class KvCache {
 public:
  // INVALID_ARGUMENT for non-positive sizes; RESOURCE_EXHAUSTED when the backend cannot hold it.
  static absl::StatusOr<KvCache> Create(backend::Backend* backend, const ModelConfig& config,
                                        const KvCacheOptions& options);

  // Blocks needed to hold `tokens` positions.
  static int BlocksFor(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

  const backend::KvLayer& layer(int i) const { return layers_[i]; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  int num_blocks() const { return options_.num_blocks; }
  int block_size() const { return options_.block_size; }
  size_t bytes() const { return bytes_; }

 private:
  KvCacheOptions options_;
  std::vector<backend::DeviceBuffer> buffers_;
  std::vector<backend::KvLayer> layers_;
  size_t bytes_ = 0;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_KV_CACHE_H_
