// Paged KV-cache block accounting (host only): which physical blocks are free, handing them to sequences'
// block tables, and the automatic prefix cache. The memory itself is the backend's (model::KvCache); this class
// only decides ownership, so the same bookkeeping serves the CPU and the CUDA backends.
//
// Prefix cache (on by default in the engine, --prefix-cache): a full block whose K/V are computed can be
// published under its prefix key: the key of the block before it (0 for the first) and the block's own token
// ids, chained, so a key names the whole token prefix up to the block's end. A new sequence takes a reference
// on the cached blocks of its longest cached prefix and computes only the rest. Blocks are reference counted
// (shared blocks stay while any sequence reads them); a cached block nobody references stays cached until its
// memory is needed: it counts as free, and Allocate evicts the least recently released first (a released
// sequence's blocks from its end backwards, so a prefix's tail goes before its head). Lookups compare the token
// ids, not only the hash: a hash collision can never hand out another prefix's K/V. A block is written only by
// the sequence that allocated it and only before it is published (a sequence reuses full blocks only, and
// computes at least its last token), so shared blocks are read-only.
//
// The K/V of a position depend only on the tokens up to it (the CPU backend's kernels are batch-invariant), so a
// request served from the cache computes exactly the numbers a cold run computes.
//
// Not thread-safe: owned by the engine thread.
#ifndef QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_
#define QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_

#include <cstdint>
#include <list>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace qrag::engine {

// The key of a full block of `tokens` whose preceding prefix has key `parent` (0 for the first block).
uint64_t BlockKey(uint64_t parent, absl::Span<const int32_t> tokens);

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool prefix_cache);

  int num_total() const { return num_total_; }
  // Blocks Allocate can hand out: never used or released, plus cached blocks nobody references.
  int num_free() const { return static_cast<int>(free_.size() + evictable_.size()); }
  int num_used() const { return num_total_ - num_free(); }
  // Blocks holding a published prefix (referenced or not).
  int num_cached() const { return static_cast<int>(cached_.size()); }
  bool prefix_cache() const { return prefix_cache_; }
  bool CanAllocate(int n) const { return n <= num_free(); }

  // Appends `n` blocks to `table` (evicting cached blocks when no other is free). Precondition: CanAllocate(n).
  void Allocate(int n, std::vector<int32_t>* table);
  // Releases every block of `table` and clears it: a block nobody references any more becomes free, or stays
  // cached (evictable) when it holds a published prefix.
  void Free(std::vector<int32_t>* table);

  // The longest cached prefix of `tokens` in whole blocks, at most `max_blocks`: the number of blocks, and in
  // *unreferenced how many of them nobody references now (taking them reduces num_free()). 0 without the cache.
  int Match(absl::Span<const int32_t> tokens, int max_blocks, int* unreferenced) const;
  // Appends the first `n` blocks Match found for `tokens` to `table`, taking a reference on each.
  void AcquireCached(absl::Span<const int32_t> tokens, int n, std::vector<int32_t>* table);
  // Publishes block `index` of `table` (full, K/V computed, referenced by the caller) as holding
  // tokens[index * block_size, (index + 1) * block_size) after the prefix of the blocks before it. A prefix
  // already cached in another block is left as it is (this block stays private). No-op without the cache.
  void Publish(absl::Span<const int32_t> tokens, const std::vector<int32_t>& table, int index);

 private:
  struct Cached {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;  // the block's token ids (compared on lookup)
  };
  // The block caching (parent, tokens), or -1.
  int32_t Find(uint64_t parent, absl::Span<const int32_t> tokens, uint64_t* key) const;

  const int num_total_;
  const int block_size_;
  const bool prefix_cache_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<int> refs_;
  std::vector<uint64_t> key_;   // per block: its published key (valid when cached_ maps it to the block)
  std::vector<bool> published_;
  std::vector<Cached> content_;  // per block, when published
  absl::flat_hash_map<uint64_t, int32_t> cached_;  // key -> block
  std::list<int32_t> evictable_;                   // cached, unreferenced; least recently released first
  std::vector<std::list<int32_t>::iterator> lru_pos_;
};

// Blocks needed to hold `tokens` positions.
inline int BlocksFor(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_BLOCK_MANAGER_H_
