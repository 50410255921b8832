#include "server/engine/block_manager.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "server/common/status.h"

namespace qrag::engine {

uint64_t BlockKey(uint64_t parent, absl::Span<const int32_t> tokens) {
  // absl::Hash is seeded per process, so a client cannot aim for collisions; lookups compare the tokens anyway.
  return static_cast<uint64_t>(absl::HashOf(parent, tokens));
}

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_cache)
    : num_total_(num_blocks),
      block_size_(block_size),
      prefix_cache_(prefix_cache),
      refs_(num_blocks, 0),
      key_(num_blocks, 0),
      published_(num_blocks, false),
      content_(prefix_cache ? num_blocks : 0),
      lru_pos_(num_blocks) {
  free_.reserve(num_blocks);
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);  // block 0 handed out first
}

void BlockManager::Allocate(int n, std::vector<int32_t>* table) {
  QRAG_CHECK(CanAllocate(n));
  for (int i = 0; i < n; ++i) {
    int32_t block;
    if (!free_.empty()) {
      block = free_.back();
      free_.pop_back();
    } else {  // evict the least recently released cached block
      block = evictable_.front();
      evictable_.pop_front();
      cached_.erase(key_[block]);
      published_[block] = false;
      content_[block] = Cached{};
    }
    QRAG_CHECK(refs_[block] == 0);
    refs_[block] = 1;
    table->push_back(block);
  }
}

void BlockManager::Free(std::vector<int32_t>* table) {
  // From the end backwards: a prefix's tail becomes evictable before its head.
  for (auto it = table->rbegin(); it != table->rend(); ++it) {
    const int32_t block = *it;
    QRAG_CHECK(refs_[block] > 0);
    if (--refs_[block] > 0) continue;
    if (published_[block]) {
      lru_pos_[block] = evictable_.insert(evictable_.end(), block);
    } else {
      free_.push_back(block);
    }
  }
  QRAG_CHECK(static_cast<int>(free_.size() + evictable_.size()) <= num_total_);
  table->clear();
}

int32_t BlockManager::Find(uint64_t parent, absl::Span<const int32_t> tokens, uint64_t* key) const {
  *key = BlockKey(parent, tokens);
  auto it = cached_.find(*key);
  if (it == cached_.end()) return -1;
  const Cached& c = content_[it->second];
  if (c.parent != parent || !std::equal(c.tokens.begin(), c.tokens.end(), tokens.begin(), tokens.end())) return -1;
  return it->second;
}

int BlockManager::Match(absl::Span<const int32_t> tokens, int max_blocks, int* unreferenced) const {
  *unreferenced = 0;
  if (!prefix_cache_) return 0;
  const int blocks = std::min(max_blocks, static_cast<int>(tokens.size()) / block_size_);
  uint64_t parent = 0;
  int n = 0;
  for (; n < blocks; ++n) {
    uint64_t key;
    const int32_t block = Find(parent, tokens.subspan(static_cast<size_t>(n) * block_size_, block_size_), &key);
    if (block < 0) break;
    if (refs_[block] == 0) ++*unreferenced;
    parent = key;
  }
  return n;
}

void BlockManager::AcquireCached(absl::Span<const int32_t> tokens, int n, std::vector<int32_t>* table) {
  uint64_t parent = 0;
  for (int i = 0; i < n; ++i) {
    uint64_t key;
    const int32_t block = Find(parent, tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_), &key);
    QRAG_CHECK(block >= 0);
    if (refs_[block]++ == 0) evictable_.erase(lru_pos_[block]);
    table->push_back(block);
    parent = key;
  }
}

void BlockManager::Publish(absl::Span<const int32_t> tokens, const std::vector<int32_t>& table, int index) {
  if (!prefix_cache_) return;
  QRAG_CHECK(static_cast<int>(tokens.size()) >= (index + 1) * block_size_ && index < static_cast<int>(table.size()));
  const int32_t block = table[index];
  if (published_[block]) return;  // taken from the cache, or published already
  // The parent's key: the previous block's, which the chain published (or found) before this one.
  uint64_t parent = 0;
  if (index > 0) {
    const int32_t prev = table[index - 1];
    if (!published_[prev]) return;  // its prefix is not cached (a duplicate): neither can this block be found
    parent = key_[prev];
  }
  const absl::Span<const int32_t> own = tokens.subspan(static_cast<size_t>(index) * block_size_, block_size_);
  const uint64_t key = BlockKey(parent, own);
  if (cached_.contains(key)) return;  // another block holds this prefix (or a colliding one): stay private
  cached_[key] = block;
  key_[block] = key;
  published_[block] = true;
  content_[block] = Cached{parent, std::vector<int32_t>(own.begin(), own.end())};
}

}  // namespace qrag::engine
