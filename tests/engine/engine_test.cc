// The serving engine on a fake model: batching bookkeeping, cancellation, deadlines, queue limits,
// draining, failures and preemption. (Real-model runs are in the server integration tests.)
#include "server/engine/engine.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/engine/collector.h"
#include "tests/test_util.h"

namespace qrag::engine {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kVocab = 300;

// A llama2.c tokenizer: <unk>, BOS, EOS, 256 byte tokens, then a few words.
std::string WriteTokenizer(const TempDir& dir) {
  std::string bytes;
  auto put_int = [&](int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_float = [&](float v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) pieces.push_back(absl::StrFormat("<0x%02X>", b));
  const char* words[] = {" the", " cat", " sat", " on", " mat", "at", " a", "ca"};
  for (const char* w : words) pieces.push_back(w);
  while (static_cast<int>(pieces.size()) < kVocab) pieces.push_back(absl::StrCat("<extra", pieces.size(), ">"));
  put_int(16);
  for (size_t i = 0; i < pieces.size(); ++i) {
    put_float(i < 259 ? 0.0f : -static_cast<float>(i));
    put_int(static_cast<int32_t>(pieces[i].size()));
    bytes += pieces[i];
  }
  const std::string path = dir.Join("tok.bin");
  ::qrag::testing::WriteFile(path, bytes);
  return path;
}

// Next token (greedy) = a printable byte token chosen from the input token and its position.
int32_t FakeNext(int32_t token, int32_t pos) { return 3 + 'a' + (token * 31 + pos * 7) % 26; }

class FakeRunner : public ModelRunner {
 public:
  int vocab_size() const override { return kVocab; }
  int max_seq_len() const override { return 64; }
  std::vector<int32_t> eos_ids() const override { return {2}; }
  absl::Status AllocateCache(int num_blocks, int block_size) override {
    num_blocks_ = num_blocks;
    return absl::OkStatus();
  }
  absl::Status Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& batch,
                       absl::Span<const int32_t> logits_for, float* logits_out) override {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    {
      std::lock_guard<std::mutex> lock(mu);
      max_batch_tokens_seen = std::max<int>(max_batch_tokens_seen, tokens.size());
      ++steps;
      if (fail_next) {
        fail_next = false;
        return absl::InternalError("injected failure");
      }
    }
    // Every block id used must be inside the pool.
    for (const auto& s : batch.sequences) {
      for (int32_t b : s.block_table) {
        if (b < 0 || b >= num_blocks_) return absl::InternalError("block out of range");
      }
    }
    if (count_ops) {
      // Made-up but exact per-sequence work: 1000 fp8 ops per token, 10 fp32 ops per logits row.
      last_.Reset(static_cast<int>(batch.sequences.size()));
      for (int32_t s : batch.token_seq) last_.ops_per_sequence[s] += 1000;
      for (int32_t r : logits_for) last_.ops_per_sequence[batch.token_seq[r]] += 10;
      last_.ops_by_precision[static_cast<int>(backend::Precision::kFP8)] = 1000 * static_cast<int64_t>(tokens.size());
      last_.ops_by_precision[static_cast<int>(backend::Precision::kF32)] = 10 * static_cast<int64_t>(logits_for.size());
    }
    for (size_t j = 0; j < logits_for.size(); ++j) {
      float* row = logits_out + j * kVocab;
      std::fill(row, row + kVocab, 0.0f);
      const int r = logits_for[j];
      row[FakeNext(tokens[r], batch.positions[r])] = 5.0f;
      row[FakeNext(tokens[r], batch.positions[r] + 1)] += 2.0f;  // a runner-up, for sampling/logprobs
    }
    return absl::OkStatus();
  }
  const model::ForwardStats* last_forward() const override { return count_ops ? &last_ : nullptr; }

  std::mutex mu;
  bool count_ops = false;
  model::ForwardStats last_;
  int delay_ms = 0;
  bool fail_next = false;
  int max_batch_tokens_seen = 0;
  int steps = 0;

 private:
  int num_blocks_ = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = model::LoadTokenizer(WriteTokenizer(dir_), kVocab);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
  }
  std::unique_ptr<Engine> Make(EngineOptions o, EngineHooks hooks = {}) {
    auto e = Engine::Create(&runner_, tokenizer_.get(), o, hooks);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  EngineRequest Greedy(const std::string& prompt, int max_tokens) {
    EngineRequest r;
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    return r;
  }
  // Runs one request alone on a fresh engine and returns its text.
  std::string Alone(const EngineRequest& r) {
    auto e = Make({});
    auto c = std::make_shared<Collector>();
    EXPECT_TRUE(e->Submit(r, c).ok());
    c->Wait();
    EXPECT_TRUE(c->status_.ok()) << c->status_;
    return c->text_;
  }
  void WaitFor(const std::function<bool()>& pred) {
    for (int i = 0; i < 3000 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(pred());
  }

  TempDir dir_;
  FakeRunner runner_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
};

// What Stats() says once a call has ended: the request no longer runs and its KV blocks are free. The
// observer reads Stats() inside OnFinish, the moment a client hears the end (gRPC answers from there).
class StatsAtFinish : public RequestObserver {
 public:
  // `probe`, when set, is also read at that moment (e.g. what the metrics observer has recorded).
  explicit StatsAtFinish(Engine* const* engine, std::function<int()> probe = nullptr)
      : engine_(engine), probe_(std::move(probe)) {}
  void OnText(std::string_view, absl::Span<const TokenLogprob>) override {}
  void OnFinish(const absl::Status& status, FinishReason, const Usage&, const Timings&) override {
    const int probed = probe_ ? probe_() : -1;
    std::lock_guard<std::mutex> lock(mu);
    stats = (*engine_)->Stats();
    probe_value = probed;
    this->status = status;
    done = true;
    cv.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done; }));
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  EngineStats stats;
  int probe_value = -1;
  absl::Status status;

 private:
  Engine* const* engine_;
  std::function<int()> probe_;
};

TEST_F(EngineTest, StatsArePublishedBeforeTheClientHearsTheEnd) {
  auto e = Make({});
  Engine* raw = e.get();
  for (int max_tokens : {1, 4}) {
    auto o = std::make_shared<StatsAtFinish>(&raw);
    ASSERT_TRUE(e->Submit(Greedy("the cat", max_tokens), o).ok());
    o->Wait();
    EXPECT_TRUE(o->status.ok()) << o->status;
    EXPECT_EQ(o->stats.running, 0) << max_tokens;
    EXPECT_EQ(o->stats.waiting, 0) << max_tokens;
    EXPECT_EQ(o->stats.kv_blocks_free, o->stats.kv_blocks_total) << max_tokens;
  }
}

TEST_F(EngineTest, GreedyRequestProducesTheFakeModelsTokens) {
  auto e = Make({});
  auto c = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the cat", 5), c).ok());
  c->Wait();
  ASSERT_TRUE(c->status_.ok()) << c->status_;
  EXPECT_EQ(c->reason_, FinishReason::kLength);
  EXPECT_EQ(c->usage_.completion_tokens, 5);
  auto ids = tokenizer_->Encode("the cat", {});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(c->usage_.prompt_tokens, static_cast<int>(ids->size()));
  // Expected: feed the chain of FakeNext from the last prompt token.
  std::string expected;
  int32_t tok = ids->back();
  int pos = static_cast<int>(ids->size()) - 1;
  for (int i = 0; i < 5; ++i, ++pos) {
    tok = FakeNext(tok, pos);
    expected += static_cast<char>(tok - 3);
  }
  EXPECT_EQ(c->text_, expected);
  EXPECT_GE(c->timings_.total_seconds, c->timings_.time_to_first_token_seconds);
  EXPECT_GE(c->timings_.time_to_first_token_seconds, c->timings_.queue_seconds);
  WaitFor([&] { return e->Stats().kv_blocks_free == e->Stats().kv_blocks_total; });
}

TEST_F(EngineTest, ConcurrentRequestsEqualTheirSoloRuns) {
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    EngineRequest r = Greedy(absl::StrCat("the cat sat", std::string(i, 'a')), 10 + i);
    if (i % 3 == 1) {  // seeded sampling too
      r.sampling.temperature = 1.0f;
      r.sampling.seed = 100 + i;
    }
    reqs.push_back(r);
  }
  std::vector<std::string> alone;
  for (const auto& r : reqs) alone.push_back(Alone(r));
  auto e = Make({.max_batch_tokens = 32, .max_running = 8});
  std::vector<std::shared_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_shared<Collector>());
    ASSERT_TRUE(e->Submit(r, cs.back()).ok());
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    cs[i]->Wait();
    ASSERT_TRUE(cs[i]->status_.ok()) << cs[i]->status_;
    EXPECT_EQ(cs[i]->text_, alone[i]) << "request " << i;
  }
  EXPECT_GT(runner_.max_batch_tokens_seen, 1);  // they really were batched
}

TEST_F(EngineTest, TinyKvPoolPreemptsAndStillProducesTheSameText) {
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(Greedy(absl::StrCat("on a mat", std::string(i, 'c')), 40));
  std::vector<std::string> alone;
  for (const auto& r : reqs) alone.push_back(Alone(r));
  // One sequence of the full context (64 + 1 positions / 4) = 17 blocks for four running sequences.
  auto e = Make({.num_kv_blocks = 17, .block_size = 4, .max_batch_tokens = 16, .max_running = 4});
  std::vector<std::shared_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_shared<Collector>());
    ASSERT_TRUE(e->Submit(r, cs.back()).ok());
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    cs[i]->Wait();
    ASSERT_TRUE(cs[i]->status_.ok()) << cs[i]->status_;
    EXPECT_EQ(cs[i]->text_, alone[i]) << "request " << i;
  }
  EXPECT_GT(e->Stats().preemptions, 0);
  WaitFor([&] { return e->Stats().kv_blocks_free == 17; });
}

TEST_F(EngineTest, CancelEndsTheRequestAndReturnsItsBlocks) {
  runner_.delay_ms = 5;
  auto e = Make({});
  auto c = std::make_shared<Collector>();
  auto id = e->Submit(Greedy("the cat", 50), c);
  ASSERT_TRUE(id.ok()) << id.status();
  WaitFor([&] { return c->chunks() >= 2; });
  EXPECT_LT(e->Stats().kv_blocks_free, e->Stats().kv_blocks_total);
  e->Cancel(*id);
  c->Wait();
  EXPECT_THAT(c->status_, StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  WaitFor([&] { return e->Stats().kv_blocks_free == e->Stats().kv_blocks_total; });
  e->Cancel(*id);  // unknown/finished ids are ignored
  EXPECT_EQ(Alone(Greedy("the cat", 3)).size(), 3u);
}

TEST_F(EngineTest, DeadlineInTheQueueAndWhileGenerating) {
  runner_.delay_ms = 10;
  auto e = Make({.max_batch_tokens = 16, .max_running = 1});
  auto a = std::make_shared<Collector>(), b = std::make_shared<Collector>();
  EngineRequest long_req = Greedy("the cat", 50);
  long_req.deadline = absl::Now() + absl::Milliseconds(300);
  ASSERT_TRUE(e->Submit(long_req, a).ok());
  EngineRequest queued = Greedy("a mat", 5);
  queued.deadline = absl::Now() + absl::Milliseconds(40);
  ASSERT_TRUE(e->Submit(queued, b).ok());
  b->Wait();
  EXPECT_THAT(b->status_, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("queue")));
  a->Wait();
  EXPECT_THAT(a->status_, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("generating")));
  EXPECT_FALSE(a->text_.empty());
  EngineRequest past = Greedy("a", 1);
  past.deadline = absl::Now() - absl::Seconds(1);
  EXPECT_THAT(e->Submit(past, std::make_shared<Collector>()).status(),
              StatusIsCode(absl::StatusCode::kDeadlineExceeded));
  WaitFor([&] { return e->Stats().kv_blocks_free == e->Stats().kv_blocks_total; });
}

TEST_F(EngineTest, FullQueueIsResourceExhausted) {
  runner_.delay_ms = 5;
  auto e = Make({.max_batch_tokens = 16, .max_running = 1, .max_waiting = 1});
  auto a = std::make_shared<Collector>(), b = std::make_shared<Collector>();
  auto ida = e->Submit(Greedy("the cat", 40), a);
  ASSERT_TRUE(ida.ok());
  WaitFor([&] { return e->Stats().running == 1; });
  ASSERT_TRUE(e->Submit(Greedy("a", 3), b).ok());
  EXPECT_THAT(e->Submit(Greedy("a", 3), std::make_shared<Collector>()).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue is full")));
  e->Cancel(*ida);
  b->Wait();
  EXPECT_TRUE(b->status_.ok());
}

TEST_F(EngineTest, ValidationErrors) {
  auto e = Make({});
  auto submit = [&](EngineRequest r) { return e->Submit(r, std::make_shared<Collector>()).status(); };
  EXPECT_THAT(submit(Greedy("", 4)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt is empty")));
  EXPECT_THAT(submit(Greedy("a", 0)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tokens")));
  EXPECT_THAT(submit(Greedy(std::string(80, 'z'), 4)), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("shorten")));
  EXPECT_THAT(submit(Greedy("the cat", 63)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tokens <=")));
  EXPECT_THAT(submit(Greedy("a\xff", 4)), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EngineRequest r = Greedy("a", 4);
  r.logprobs = 21;
  EXPECT_THAT(submit(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("logprobs")));
  r = Greedy("a", 4);
  r.sampling.top_p = 0;
  EXPECT_THAT(submit(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  EXPECT_EQ(Alone(Greedy("a", 2)).size(), 2u);  // still serving
}

TEST_F(EngineTest, StopStringAndLogprobs) {
  const std::string full = Alone(Greedy("the cat", 12));
  ASSERT_GE(full.size(), 12u);
  const std::string stop = full.substr(5, 2);
  auto e = Make({});
  auto c = std::make_shared<Collector>();
  EngineRequest r = Greedy("the cat", 12);
  r.stop = {stop};
  r.logprobs = 3;
  ASSERT_TRUE(e->Submit(r, c).ok());
  c->Wait();
  EXPECT_EQ(c->reason_, FinishReason::kStop);
  EXPECT_EQ(c->text_, full.substr(0, full.find(stop)));
  ASSERT_FALSE(c->logprobs_.empty());
  for (const auto& lp : c->logprobs_) {
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].first, lp.token);  // greedy: the chosen token is the most likely
    EXPECT_LE(lp.logprob, 0.0f);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
    EXPECT_EQ(lp.text.size(), 1u);
  }
}

TEST_F(EngineTest, ModelFailureEndsThatBatchOnlyAsInternal) {
  auto e = Make({});
  {
    std::lock_guard<std::mutex> lock(runner_.mu);
    runner_.fail_next = true;
  }
  auto c = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the", 4), c).ok());
  c->Wait();
  EXPECT_THAT(c->status_, StatusIs(absl::StatusCode::kInternal, HasSubstr("injected failure")));
  auto d = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the", 4), d).ok());
  d->Wait();
  EXPECT_TRUE(d->status_.ok());
  WaitFor([&] { return e->Stats().kv_blocks_free == e->Stats().kv_blocks_total; });
}

TEST_F(EngineTest, DrainFinishesInFlightThenRefuses) {
  runner_.delay_ms = 2;
  auto e = Make({});
  auto a = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the cat", 20), a).ok());
  std::thread drainer([&] { e->Drain(absl::Seconds(20)); });
  WaitFor([&] { return !e->Submit(Greedy("a", 1), std::make_shared<Collector>()).ok(); });
  EXPECT_THAT(e->Submit(Greedy("a", 1), std::make_shared<Collector>()).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  drainer.join();
  a->Wait();
  EXPECT_TRUE(a->status_.ok()) << a->status_;
  EXPECT_EQ(a->usage_.completion_tokens, 20);
}

TEST_F(EngineTest, DrainGraceOverEndsTheRestAsUnavailable) {
  runner_.delay_ms = 5;
  auto e = Make({});
  auto a = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the cat", 50), a).ok());
  WaitFor([&] { return a->chunks() >= 1; });
  e->Drain(absl::Milliseconds(20));
  a->Wait();
  EXPECT_THAT(a->status_, StatusIsCode(absl::StatusCode::kUnavailable));
  EXPECT_EQ(a->finishes_, 1);
}

TEST_F(EngineTest, BadOptionsAreRejected) {
  EXPECT_THAT(Engine::Create(&runner_, tokenizer_.get(), {.context_length = 100}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the model's maximum")));
  EXPECT_THAT(Engine::Create(&runner_, tokenizer_.get(), {.max_batch_tokens = 2, .max_running = 4}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_tokens")));
  EXPECT_THAT(Engine::Create(&runner_, tokenizer_.get(), {.num_kv_blocks = 3}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot hold one sequence")));
}

// An energy meter whose reading grows by a different amount at every call, remembering what it returned.
class FakeEnergy : public EnergySource {
 public:
  double CumulativeJoules() override {
    std::lock_guard<std::mutex> lock(mu_);
    value_ += 0.5 + 0.25 * static_cast<double>(values_.size() % 7);
    values_.push_back(value_);
    return value_;
  }
  // The engine reads at the start and at the end of every iteration: the energy of those intervals.
  double Metered() {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(values_.size() % 2, 0u);
    double total = 0;
    for (size_t i = 0; i + 1 < values_.size(); i += 2) total += values_[i + 1] - values_[i];
    return total;
  }

 private:
  std::mutex mu_;
  double value_ = 100;
  std::vector<double> values_;
};

class FactsRecorder : public EngineObserver {
 public:
  void OnIteration(const IterationFacts& f) override {
    std::lock_guard<std::mutex> lock(mu);
    ++iterations;
    joules += f.joules;
    for (int64_t v : f.ops_by_precision) ops += v;
    generated += f.generated_tokens;
    tokens += f.prefill_tokens + f.decode_tokens;
  }
  void OnRequestFinished(const absl::Status& status, const Usage& usage, const Timings& timings) override {
    std::lock_guard<std::mutex> lock(mu);
    ++finished;
  }
  void OnRequestRejected(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu);
    rejected.push_back(status.code());
  }
  void OnEngineStats(const EngineStats& stats) override {
    std::lock_guard<std::mutex> lock(mu);
    ++stats_calls;
  }

  std::mutex mu;
  int iterations = 0, finished = 0, stats_calls = 0;
  double joules = 0;
  int64_t ops = 0, generated = 0, tokens = 0;
  std::vector<absl::StatusCode> rejected;
};

// The metrics observer has recorded a request when its client hears the end, and before Stats() stops counting
// it: a /metrics scrape made after the call ended (or once running is back to 0) includes it.
TEST_F(EngineTest, MetricsRecordARequestBeforeItsClientHearsTheEnd) {
  FactsRecorder facts;
  EngineHooks hooks;
  hooks.observer = &facts;
  auto e = Make({}, hooks);
  Engine* raw = e.get();
  auto recorded = [&facts] {
    std::lock_guard<std::mutex> lock(facts.mu);
    return facts.finished;
  };
  for (int i = 1; i <= 3; ++i) {
    auto o = std::make_shared<StatsAtFinish>(&raw, recorded);
    ASSERT_TRUE(e->Submit(Greedy("the cat", 3), o).ok());
    o->Wait();
    EXPECT_EQ(o->probe_value, i);
    EXPECT_EQ(o->stats.running, 0);
  }
}

TEST_F(EngineTest, FakeMeter_EightConcurrentChunkedRequests_AttributionSumsToMeteredEnergy_OpsExact) {
  runner_.count_ops = true;
  FakeEnergy energy;
  FactsRecorder facts;
  EngineOptions o;
  o.max_batch_tokens = 8;  // prompts are chunked, batches mix prefill and decode
  o.max_running = 4;       // the other requests wait
  auto e = Make(o, {.observer = &facts, .energy = &energy});
  std::vector<std::shared_ptr<Collector>> collectors;
  for (int i = 0; i < 8; ++i) {
    collectors.push_back(std::make_shared<Collector>());
    ASSERT_TRUE(e->Submit(Greedy(absl::StrCat("the cat sat on the mat", std::string(i * 3, 'a')), 3 + 2 * i),
                          collectors.back())
                    .ok());
  }
  for (auto& c : collectors) c->Wait();
  e->Drain(absl::Seconds(10));  // no reading after this point

  double attributed = 0;
  int64_t request_ops = 0, forwarded_tokens = 0, generated = 0;
  for (auto& c : collectors) {
    ASSERT_TRUE(c->status_.ok()) << c->status_;
    ASSERT_EQ(c->reason_, FinishReason::kLength);
    EXPECT_GT(c->usage_.energy_joules, 0);
    attributed += c->usage_.energy_joules;
    // Forward tokens: the prompt but its prefix-cached part (the prompts share "the cat sat on the mat"), then
    // every generated token but the last; one logits row per generated token.
    const int64_t forwarded =
        c->usage_.prompt_tokens - c->usage_.cached_prompt_tokens + c->usage_.completion_tokens - 1;
    EXPECT_EQ(c->usage_.tensor_ops, 1000 * forwarded + 10 * c->usage_.completion_tokens);
    request_ops += c->usage_.tensor_ops;
    forwarded_tokens += forwarded;
    generated += c->usage_.completion_tokens;
  }
  const double metered = energy.Metered();
  ASSERT_GT(metered, 0);
  EXPECT_NEAR(attributed, metered, 0.01 * metered);
  std::lock_guard<std::mutex> lock(facts.mu);
  EXPECT_NEAR(facts.joules, metered, 1e-9 * metered);
  EXPECT_EQ(facts.ops, request_ops);
  EXPECT_EQ(facts.tokens, forwarded_tokens);  // prefill + decode tokens over all iterations
  EXPECT_EQ(facts.generated, generated);
  EXPECT_EQ(facts.finished, 8);
  EXPECT_GT(facts.iterations, 8);
  EXPECT_GT(facts.stats_calls, 0);
  EXPECT_EQ(e->Stats().preemptions, 0);  // (a recompute would add ops the formula above does not count)
}

TEST_F(EngineTest, FakeMeter_FailedStep_EnergyStillChargedAndReported) {
  FakeEnergy energy;
  FactsRecorder facts;
  auto e = Make({}, {.observer = &facts, .energy = &energy});
  {
    std::lock_guard<std::mutex> lock(runner_.mu);
    runner_.fail_next = true;
  }
  auto c = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the cat", 4), c).ok());
  c->Wait();
  EXPECT_THAT(c->status_, StatusIs(absl::StatusCode::kInternal, HasSubstr("injected failure")));
  e->Drain(absl::Seconds(10));
  const double metered = energy.Metered();
  EXPECT_GT(metered, 0);
  EXPECT_NEAR(c->usage_.energy_joules, metered, 1e-9 * metered);
  EXPECT_EQ(c->usage_.tensor_ops, 0);  // the runner counts no ops (and the step failed)
  std::lock_guard<std::mutex> lock(facts.mu);
  EXPECT_EQ(facts.iterations, 1);
  EXPECT_EQ(facts.finished, 1);
  EXPECT_NEAR(facts.joules, metered, 1e-9 * metered);
}

TEST_F(EngineTest, Observer_RejectedSubmitsReported) {
  FactsRecorder facts;
  auto e = Make({}, {.observer = &facts});
  auto c = std::make_shared<Collector>();
  EXPECT_FALSE(e->Submit(Greedy("the cat", 0), c).ok());
  EXPECT_FALSE(e->Submit(Greedy("", 3), c).ok());
  std::lock_guard<std::mutex> lock(facts.mu);
  EXPECT_EQ(facts.rejected, (std::vector<absl::StatusCode>{absl::StatusCode::kInvalidArgument,
                                                           absl::StatusCode::kInvalidArgument}));
}

TEST_F(EngineTest, NoHooks_UsageEnergyZero_OpsFromRunner) {
  runner_.count_ops = true;
  auto e = Make({});
  auto c = std::make_shared<Collector>();
  ASSERT_TRUE(e->Submit(Greedy("the cat", 4), c).ok());
  c->Wait();
  ASSERT_TRUE(c->status_.ok());
  EXPECT_EQ(c->usage_.energy_joules, 0);
  EXPECT_EQ(c->usage_.tensor_ops, 1000 * (c->usage_.prompt_tokens + 3) + 10 * 4);
}

}  // namespace
}  // namespace qrag::engine
