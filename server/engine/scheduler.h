// Iteration-level continuous batching (host only, no model): every iteration the scheduler decides which
// sequences run and how many of their tokens, over a paged KV cache. Two small policies, as in
// TensorRT-LLM's scheduler:
//
//  - Capacity policy: which waiting sequences are admitted (FCFS, no overtaking, only when the KV pool
//    holds all their known tokens plus one; at most max_running at once; with the prefix cache, a sequence
//    starts with the cached blocks of its longest cached prefix — whole blocks, never its last token — and
//    computes only the rest), and whom to preempt when a
//    running sequence needs a block and none is free (the most recently admitted other sequence; its
//    blocks are freed and it returns to the front of the queue, to be recomputed later).
//  - Batch builder: a token budget per iteration (max_batch_tokens): decodes first (one token per running
//    sequence, oldest first), then prefill chunks of sequences already running, then newly admitted ones
//    (chunked prefill: a long prompt is spread over several iterations).
//
// The scheduler owns no sequences: the engine does, and reports back what happened (Advance) and when a
// sequence ends (Remove). Not thread-safe: the engine thread only.
#ifndef QRAG_SERVER_ENGINE_SCHEDULER_H_
#define QRAG_SERVER_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "server/engine/block_manager.h"

namespace qrag::engine {

// What the scheduler knows of a request.
struct Sequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens; the last one may lack its K/V yet
  int num_computed = 0;         // leading tokens whose K/V are in the cache
  std::vector<int32_t> block_table;
  int64_t admit_order = -1;     // admission counter (preemption picks the largest); -1 while waiting
  int preemptions = 0;
  int cached_tokens = 0;        // leading tokens taken from the prefix cache at the first admission
  int published = 0;            // leading blocks of block_table published to (or taken from) the prefix cache

  int pending() const { return static_cast<int>(tokens.size()) - num_computed; }
};

struct SchedulerOptions {
  int block_size = 16;
  int max_batch_tokens = 256;
  int max_running = 16;
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int start = 0;        // first position
  int length = 0;       // tokens
  bool samples = false;  // reaches the last known token: its logits give the next token
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> admitted;   // moved from waiting to running this iteration
  std::vector<Sequence*> preempted;  // moved from running back to waiting (blocks freed)
  int num_tokens = 0;
  // Prefix cache, over this iteration's admissions: their known tokens, and how many came from the cache.
  int prefix_queried_tokens = 0;
  int prefix_hit_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, BlockManager* blocks);

  // Queues `seq` (tokens set, nothing computed, no blocks) behind every waiting sequence.
  void Enqueue(Sequence* seq);
  // Drops `seq` wherever it is and frees its blocks (finished, cancelled, expired).
  void Remove(Sequence* seq);
  // Plans one iteration. Blocks for every scheduled position are allocated on return.
  SchedulerOutput Schedule();
  // Records that `chunk` ran: its positions are now in the cache, and the blocks it filled are published to
  // the prefix cache.
  void Advance(const ScheduledChunk& chunk);

  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  // Makes room so that `seq` holds `positions` positions; preempts newer sequences if needed. Returns
  // false when `seq` itself had to be preempted (it was the newest).
  bool Reserve(Sequence* seq, int positions, SchedulerOutput* out, int* budget);
  void Preempt(Sequence* victim, SchedulerOutput* out, int* budget);

  SchedulerOptions options_;
  BlockManager* blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order
  int64_t next_admit_ = 0;
};

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_SCHEDULER_H_
