#include "server/model/kv_cache.h"

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::model {

absl::StatusOr<KvCache> KvCache::Create(backend::Backend* backend, const ModelConfig& config,
                                        const KvCacheOptions& options) {
  if (options.num_blocks <= 0 || options.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: num_blocks (", options.num_blocks,
                                                   ") and block_size (", options.block_size,
                                                   ") must be positive"));
  }
  KvCache cache;
  cache.options_ = options;
  const int64_t slots = static_cast<int64_t>(options.num_blocks) * options.block_size;
  const size_t bytes = static_cast<size_t>(slots) * config.kv_dim() * sizeof(float);
  for (int l = 0; l < config.n_layers; ++l) {
    QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer k, backend->Allocate(bytes));
    QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer v, backend->Allocate(bytes));
    cache.layers_.push_back(backend::KvLayer{k.as<float>(), v.as<float>(), slots});
    cache.buffers_.push_back(std::move(k));
    cache.buffers_.push_back(std::move(v));
    cache.bytes_ += 2 * bytes;
  }
  return cache;
}

}  // namespace qrag::model
