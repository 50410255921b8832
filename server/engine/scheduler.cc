#include "server/engine/scheduler.h"

#include <algorithm>

#include "server/common/status.h"

namespace qrag::engine {

Scheduler::Scheduler(const SchedulerOptions& options, BlockManager* blocks) : options_(options), blocks_(blocks) {}

void Scheduler::Enqueue(Sequence* seq) {
  seq->admit_order = -1;
  waiting_.push_back(seq);
}

void Scheduler::Remove(Sequence* seq) {
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
  blocks_->Free(&seq->block_table);
}

void Scheduler::Preempt(Sequence* victim, SchedulerOutput* out, int* budget) {
  // Drop any chunk already planned for the victim this iteration and refund its tokens.
  for (auto it = out->chunks.begin(); it != out->chunks.end();) {
    if (it->seq == victim) {
      *budget += it->length;
      out->num_tokens -= it->length;
      it = out->chunks.erase(it);
    } else {
      ++it;
    }
  }
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  blocks_->Free(&victim->block_table);
  victim->num_computed = 0;  // recomputed when readmitted (what the prefix cache still holds, from it)
  victim->published = 0;
  victim->admit_order = -1;
  ++victim->preemptions;
  waiting_.push_front(victim);
  out->preempted.push_back(victim);
}

bool Scheduler::Reserve(Sequence* seq, int positions, SchedulerOutput* out, int* budget) {
  const int needed = BlocksFor(positions, options_.block_size) - static_cast<int>(seq->block_table.size());
  while (needed > 0 && !blocks_->CanAllocate(needed)) {
    // The most recently admitted running sequence gives way.
    Sequence* victim = *std::max_element(running_.begin(), running_.end(), [](const Sequence* a, const Sequence* b) {
      return a->admit_order < b->admit_order;
    });
    Preempt(victim, out, budget);
    if (victim == seq) return false;
  }
  if (needed > 0) blocks_->Allocate(needed, &seq->block_table);
  return true;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int budget = options_.max_batch_tokens;
  auto plan = [&](Sequence* seq, int length) {
    const int start = seq->num_computed;
    out.chunks.push_back({seq, start, length, start + length == static_cast<int>(seq->tokens.size())});
    out.num_tokens += length;
    budget -= length;
  };

  // 1. Decodes, oldest first. 2. Prefill chunks of running sequences. (A copy: preemption edits running_.)
  for (int pass = 0; pass < 2; ++pass) {
    const std::vector<Sequence*> snapshot = running_;
    for (Sequence* seq : snapshot) {
      if (budget <= 0) break;
      if (std::find(running_.begin(), running_.end(), seq) == running_.end()) continue;  // preempted
      const bool decode = seq->pending() == 1;
      if (decode != (pass == 0) || seq->pending() <= 0) continue;
      const int length = std::min(seq->pending(), budget);
      if (Reserve(seq, seq->num_computed + length, &out, &budget)) plan(seq, length);
    }
  }

  // 3. Admissions, first come first served; the head of the queue is never overtaken.
  while (!waiting_.empty() && budget > 0 && static_cast<int>(running_.size()) < options_.max_running) {
    Sequence* seq = waiting_.front();
    const int known = static_cast<int>(seq->tokens.size());
    // The longest cached prefix in whole blocks, leaving at least the last token to compute (its logits give
    // the next token). Taking unreferenced cached blocks uses up free ones.
    int unreferenced = 0;
    const int hit = blocks_->Match(seq->tokens, (known - 1) / options_.block_size, &unreferenced);
    if (BlocksFor(known + 1, options_.block_size) - hit > blocks_->num_free() - unreferenced) break;
    waiting_.pop_front();
    seq->admit_order = next_admit_++;
    running_.push_back(seq);
    out.admitted.push_back(seq);
    if (blocks_->prefix_cache()) {
      blocks_->AcquireCached(seq->tokens, hit, &seq->block_table);
      seq->published = hit;
      seq->num_computed = hit * options_.block_size;
      if (seq->preemptions == 0) seq->cached_tokens = seq->num_computed;  // what the client's prompt saved
      out.prefix_queried_tokens += known;
      out.prefix_hit_tokens += seq->num_computed;
    }
    const int length = std::min(seq->pending(), budget);
    QRAG_CHECK(Reserve(seq, seq->num_computed + length, &out, &budget));
    plan(seq, length);
  }
  return out;
}

void Scheduler::Advance(const ScheduledChunk& chunk) {
  Sequence* seq = chunk.seq;
  seq->num_computed += chunk.length;
  if (!blocks_->prefix_cache()) return;
  for (const int full = seq->num_computed / options_.block_size; seq->published < full; ++seq->published) {
    blocks_->Publish(seq->tokens, seq->block_table, seq->published);
  }
}

}  // namespace qrag::engine
