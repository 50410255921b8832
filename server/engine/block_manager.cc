#include "server/engine/block_manager.h"

#include "server/common/status.h"

namespace qrag::engine {

BlockManager::BlockManager(int num_blocks) : num_total_(num_blocks) {
  free_.reserve(num_blocks);
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);  // block 0 handed out first
}

void BlockManager::Allocate(int n, std::vector<int32_t>* table) {
  QRAG_CHECK(CanAllocate(n));
  for (int i = 0; i < n; ++i) {
    table->push_back(free_.back());
    free_.pop_back();
  }
}

void BlockManager::Free(std::vector<int32_t>* table) {
  for (auto it = table->rbegin(); it != table->rend(); ++it) free_.push_back(*it);
  QRAG_CHECK(static_cast<int>(free_.size()) <= num_total_);
  table->clear();
}

}  // namespace qrag::engine
