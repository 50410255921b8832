// Table-driven iteration traces of the scheduler: arrivals, then what each iteration plans, whom it
// preempts, and the free KV blocks after the simulated step.
#include "server/engine/scheduler.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/test_util.h"

namespace qrag::engine {
namespace {

struct SeqSpec {
  char name;
  int prompt;      // prompt tokens
  int generate;    // tokens to generate before finishing
  int arrive;      // iteration at which it is queued
};

struct Step {
  std::string plan;       // chunks in order: "A0+4*" = seq A, start 0, 4 tokens, samples
  std::string preempted;  // names, in order
  int free_blocks;        // after the step (finished sequences removed)
};

struct Trace {
  std::string name;
  SchedulerOptions options;
  int num_blocks;
  std::vector<SeqSpec> seqs;
  std::vector<Step> steps;
  bool prefix_cache = false;
  // Prompt token ids: all 7 by default; with `distinct`, sequence X's prompt is X, X+1, X+2, ...
  bool distinct = false;
};

void RunTrace(const Trace& t) {
  BlockManager blocks(t.num_blocks, t.options.block_size, t.prefix_cache);
  Scheduler s(t.options, &blocks);
  std::map<char, std::unique_ptr<Sequence>> seqs;
  std::map<Sequence*, std::pair<char, int>> info;  // name, generated so far
  std::map<char, int> target;
  for (size_t iter = 0; iter < t.steps.size(); ++iter) {
    for (const SeqSpec& spec : t.seqs) {
      if (spec.arrive != static_cast<int>(iter)) continue;
      auto seq = std::make_unique<Sequence>();
      seq->tokens.assign(spec.prompt, 7);
      if (t.distinct) {
        for (int i = 0; i < spec.prompt; ++i) seq->tokens[i] = spec.name + i;
      }
      info[seq.get()] = {spec.name, 0};
      target[spec.name] = spec.generate;
      s.Enqueue(seq.get());
      seqs[spec.name] = std::move(seq);
    }
    SchedulerOutput out = s.Schedule();
    std::vector<std::string> plan, preempted;
    int tokens = 0;
    for (const auto& c : out.chunks) {
      plan.push_back(absl::StrCat(std::string(1, info[c.seq].first), c.start, "+", c.length, c.samples ? "*" : ""));
      tokens += c.length;
      // Every scheduled position has a block.
      ASSERT_GE(static_cast<int>(c.seq->block_table.size()) * t.options.block_size, c.start + c.length);
    }
    for (Sequence* p : out.preempted) preempted.push_back(std::string(1, info[p].first));
    EXPECT_LE(tokens, t.options.max_batch_tokens);
    EXPECT_EQ(tokens, out.num_tokens);
    EXPECT_LE(static_cast<int>(s.running().size()), t.options.max_running);
    // Simulate the model: advance, sample, finish.
    for (const auto& c : out.chunks) {
      s.Advance(c);
      if (!c.samples) continue;
      c.seq->tokens.push_back(100 + info[c.seq].second);
      if (++info[c.seq].second == target[info[c.seq].first]) s.Remove(c.seq);
    }
    EXPECT_EQ(absl::StrJoin(plan, " "), t.steps[iter].plan) << t.name << " iteration " << iter;
    EXPECT_EQ(absl::StrJoin(preempted, " "), t.steps[iter].preempted) << t.name << " iteration " << iter;
    EXPECT_EQ(blocks.num_free(), t.steps[iter].free_blocks) << t.name << " iteration " << iter;
  }
}

class SchedulerTrace : public ::testing::TestWithParam<Trace> {};

TEST_P(SchedulerTrace, Matches) { RunTrace(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Traces, SchedulerTrace,
    ::testing::Values(
        Trace{"SingleSequencePrefillThenDecode", {.block_size = 4, .max_batch_tokens = 8, .max_running = 4}, 8,
              {{'A', 5, 3, 0}},
              {{"A0+5*", "", 6}, {"A5+1*", "", 6}, {"A6+1*", "", 8}}},
        Trace{"ChunkedPrefillSpreadsALongPrompt", {.block_size = 4, .max_batch_tokens = 4, .max_running = 4}, 8,
              {{'A', 10, 1, 0}},
              {{"A0+4", "", 7}, {"A4+4", "", 6}, {"A8+2*", "", 8}}},
        Trace{"DecodesFirstThenNewPrefill", {.block_size = 4, .max_batch_tokens = 4, .max_running = 4}, 8,
              {{'A', 2, 4, 0}, {'B', 6, 1, 1}},
              {{"A0+2*", "", 7}, {"A2+1* B0+3", "", 6}, {"A3+1* B3+3*", "", 7}, {"A4+1*", "", 8}}},
        Trace{"MaxRunningMakesLaterArrivalsWait", {.block_size = 4, .max_batch_tokens = 16, .max_running = 1}, 8,
              {{'A', 3, 2, 0}, {'B', 3, 1, 0}},
              {{"A0+3*", "", 7}, {"A3+1*", "", 8}, {"B0+3*", "", 8}}},
        Trace{"NoOvertakingWhenTheHeadDoesNotFit", {.block_size = 2, .max_batch_tokens = 16, .max_running = 4}, 4,
              {{'A', 5, 2, 0}, {'B', 7, 1, 1}, {'C', 1, 1, 1}},
              // B needs 4 blocks and only 1 is free: C (1 block) must not overtake it.
              {{"A0+5*", "", 1}, {"A5+1*", "", 4}, {"B0+7*", "", 4}, {"C0+1*", "", 4}}},
        Trace{"PreemptNewestAndRecompute", {.block_size = 2, .max_batch_tokens = 16, .max_running = 4}, 4,
              {{'A', 3, 3, 0}, {'B', 3, 3, 0}},
              {{"A0+3* B0+3*", "", 0}, {"A3+1* B3+1*", "", 0}, {"A4+1*", "B", 4}, {"B0+5*", "", 4}}},
        Trace{"BudgetLimitsDecodesOldestFirst", {.block_size = 4, .max_batch_tokens = 2, .max_running = 3}, 8,
              {{'A', 1, 2, 0}, {'B', 1, 2, 0}, {'C', 1, 1, 0}},
              {{"A0+1* B0+1*", "", 6}, {"A1+1* B1+1*", "", 8}, {"C0+1*", "", 8}}},
        // Prefix cache: B repeats A's 9-token prompt after A finished: its first 2 blocks (8 tokens) come from
        // the cache and only the last token is computed. C's prompt is A's 8 tokens: a whole-block prompt still
        // computes its last token, so only 1 block (4 tokens) is reused. The cached blocks count as free.
        Trace{"PrefixCacheReusesWholeBlocksAndComputesTheLastToken",
              {.block_size = 4, .max_batch_tokens = 16, .max_running = 4}, 8,
              {{'A', 9, 1, 0}, {'B', 9, 2, 1}, {'C', 8, 1, 3}},
              {{"A0+9*", "", 8}, {"B8+1*", "", 5}, {"B9+1*", "", 8}, {"C4+4*", "", 8}},
              /*prefix_cache=*/true},
        // B shares A's first two blocks while both run (referenced twice); preempted for A's next block, B
        // releases only its own block, waits while A holds the shared ones, and comes back through the cache
        // (4 of its 6 tokens). Its last block then evicts A's released, cached tail.
        Trace{"PrefixCacheSharedBlocksSurvivePreemption",
              {.block_size = 2, .max_batch_tokens = 16, .max_running = 4}, 4,
              {{'A', 5, 3, 0}, {'B', 5, 3, 1}},
              {{"A0+5*", "", 1}, {"A5+1* B4+1*", "", 0}, {"A6+1*", "B", 4}, {"B4+2*", "", 1}, {"B6+1*", "", 4}},
              /*prefix_cache=*/true}),
    [](const auto& info) { return info.param.name; });

TEST(BlockManager, AllocateFreeRoundTrip) {
  BlockManager b(5, 4, false);
  std::vector<int32_t> t1, t2;
  b.Allocate(3, &t1);
  EXPECT_EQ(t1, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FALSE(b.CanAllocate(3));
  b.Allocate(2, &t2);
  EXPECT_EQ(b.num_free(), 0);
  b.Free(&t1);
  EXPECT_TRUE(t1.empty());
  EXPECT_EQ(b.num_free(), 3);
  EXPECT_EQ(b.num_used(), 2);
  EXPECT_EQ(BlocksFor(0, 4), 0);
  EXPECT_EQ(BlocksFor(4, 4), 1);
  EXPECT_EQ(BlocksFor(5, 4), 2);
}

TEST(BlockManager, PrefixCache_PublishMatchShareEvict) {
  BlockManager b(4, 2, true);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  std::vector<int32_t> a;
  b.Allocate(3, &a);
  int unreferenced = -1;
  EXPECT_EQ(b.Match(prompt, 2, &unreferenced), 0);
  b.Publish(prompt, a, 0);
  b.Publish(prompt, a, 1);
  EXPECT_EQ(b.num_cached(), 2);
  EXPECT_EQ(b.Match(prompt, 2, &unreferenced), 2);
  EXPECT_EQ(unreferenced, 0);  // a still holds them
  EXPECT_EQ(b.Match(prompt, 1, &unreferenced), 1);
  EXPECT_EQ(b.Match(std::vector<int32_t>{1, 2, 3, 9}, 2, &unreferenced), 1);  // diverges in block 2
  EXPECT_EQ(b.Match(std::vector<int32_t>{3, 4, 1, 2}, 2, &unreferenced), 0);  // block 2's tokens, not its prefix
  // Sharing: a second table references the cached blocks; nothing new is used.
  std::vector<int32_t> c;
  b.AcquireCached(prompt, 2, &c);
  EXPECT_EQ(c, (std::vector<int32_t>{a[0], a[1]}));
  EXPECT_EQ(b.num_free(), 1);
  b.Free(&a);  // the shared blocks stay (c), a's private third block is free
  EXPECT_EQ(b.num_free(), 2);
  b.Free(&c);  // unreferenced cached blocks count as free and stay cached
  EXPECT_EQ(b.num_free(), 4);
  EXPECT_EQ(b.num_cached(), 2);
  EXPECT_EQ(b.Match(prompt, 2, &unreferenced), 2);
  EXPECT_EQ(unreferenced, 2);
  // Allocating everything evicts them: the tail (released first) before the head.
  std::vector<int32_t> d;
  b.Allocate(3, &d);
  EXPECT_EQ(b.num_cached(), 1);
  EXPECT_EQ(b.Match(prompt, 2, &unreferenced), 1);
  b.Allocate(1, &d);
  EXPECT_EQ(b.num_cached(), 0);
  EXPECT_EQ(b.Match(prompt, 2, &unreferenced), 0);
  EXPECT_EQ(b.num_free(), 0);
  b.Free(&d);
  EXPECT_EQ(b.num_free(), 4);
}

TEST(BlockManager, PrefixCache_DuplicatePrefixStaysPrivate_OffDoesNothing) {
  BlockManager b(4, 2, true);
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  std::vector<int32_t> a, c;
  b.Allocate(2, &a);
  b.Allocate(2, &c);
  for (int i = 0; i < 2; ++i) b.Publish(prompt, a, i);
  for (int i = 0; i < 2; ++i) b.Publish(prompt, c, i);  // computed at the same time: a holds the prefix
  EXPECT_EQ(b.num_cached(), 2);
  b.Free(&c);
  EXPECT_EQ(b.num_free(), 2);
  b.Free(&a);
  EXPECT_EQ(b.num_free(), 4);
  EXPECT_EQ(b.num_cached(), 2);

  BlockManager off(4, 2, false);
  std::vector<int32_t> t;
  off.Allocate(2, &t);
  off.Publish(prompt, t, 0);
  int unreferenced = -1;
  EXPECT_EQ(off.Match(prompt, 2, &unreferenced), 0);
  EXPECT_EQ(off.num_cached(), 0);
}

TEST(Scheduler, RemoveWhileWaitingOrRunningFreesBlocks) {
  BlockManager b(4, 2, false);
  Scheduler s({.block_size = 2, .max_batch_tokens = 8, .max_running = 2}, &b);
  Sequence a, c;
  a.tokens.assign(3, 1);
  c.tokens.assign(3, 1);
  s.Enqueue(&a);
  s.Enqueue(&c);
  SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.chunks.size(), 2u);
  EXPECT_EQ(b.num_free(), 0);
  s.Remove(&a);
  EXPECT_EQ(b.num_free(), 2);
  s.Remove(&c);
  EXPECT_EQ(b.num_free(), 4);
  EXPECT_TRUE(s.running().empty());
  Sequence d;
  d.tokens.assign(2, 1);
  s.Enqueue(&d);
  s.Remove(&d);  // still waiting
  EXPECT_TRUE(s.waiting().empty());
}

}  // namespace
}  // namespace qrag::engine
