// Paged KV-cache block accounting (host only): which physical blocks are free, and handing them to
// sequences' block tables. The memory itself is model::KvCache; this class only decides ownership.
// Not thread-safe: owned by the engine thread.
#ifndef QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_
#define QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_

#include <cstdint>
#include <vector>

namespace qrag::engine {

class BlockManager {
 public:
  explicit BlockManager(int num_blocks);

  int num_total() const { return num_total_; }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_total_ - num_free(); }
  bool CanAllocate(int n) const { return n <= num_free(); }

  // Appends `n` free blocks to `table`. Precondition: CanAllocate(n).
  void Allocate(int n, std::vector<int32_t>* table);
  // Returns every block of `table` to the pool and clears it.
  void Free(std::vector<int32_t>* table);

 private:
  int num_total_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

// Blocks needed to hold `tokens` positions.
inline int BlocksFor(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_
