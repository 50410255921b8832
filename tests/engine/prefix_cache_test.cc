// The prefix cache over the real engine on the CPU backend (stories260K): many requests sharing prompt
// prefixes of every length around the block boundaries (a block ± 1 token), greedy and seeded, arriving at once
// from several threads and in waves, with a KV pool small enough to preempt, and some cancelled — each
// completion (text, token ids and logprobs, bit for bit) equals the one an engine without the cache produces,
// the cache did serve prompt tokens, and every block is back in the pool at the end.
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/engine.h"
#include "server/engine/model_runner.h"
#include "tests/engine/collector.h"
#include "tests/model/stories_fixture.h"

namespace qrag::engine {
namespace {

constexpr int kBlock = 16;

struct Case {
  std::vector<int32_t> prompt;  // BOS first
  float temperature = 0;
  uint64_t seed = 0;
  int max_tokens = 0;
  bool cancel = false;
};

struct Outcome {
  absl::Status status;
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  Usage usage;
};

class PrefixCacheEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_SHARED_PATH(model_path, "models/stories260K/stories260K.bin");
    QRAG_REQUIRE_SHARED_PATH(tok_path, "models/stories260K/tok512.bin");
    ::qrag::testing::LoadStories260K(model_path, tok_path, &model_, &tokenizer_);
    if (HasFatalFailure()) return;
    for (int i = 0; i < 2; ++i) {
      auto t = model::Transformer::Create(*model_, &cpu_, model::TransformerOptions{});
      ASSERT_TRUE(t.ok()) << t.status();
      transformers_[i] = std::move(*t);
      runners_[i] = std::make_unique<TransformerRunner>(transformers_[i].get());
    }
  }

  // An engine whose pool (20 blocks of 16) holds about 3 of the cases below, so 8 running ones preempt.
  std::unique_ptr<Engine> MakeEngine(int which, bool prefix_cache) {
    EngineOptions o;
    o.block_size = kBlock;
    o.context_length = 256;
    o.max_running = 8;
    o.max_batch_tokens = 64;
    o.num_kv_blocks = 20;  // one full context (17 blocks) fits, as the engine requires
    o.max_waiting = 512;
    o.prefix_cache = prefix_cache;
    auto e = Engine::Create(runners_[which].get(), tokenizer_.get(), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Runs `cases` on `engine`: wave by wave (a wave's requests submitted at once from 4 threads, the next wave
  // once the previous one finished, so later waves meet a warm cache).
  std::vector<Outcome> Run(Engine* engine, const std::vector<std::vector<Case>>& waves) {
    std::vector<Outcome> out;
    for (const std::vector<Case>& wave : waves) {
      std::vector<std::shared_ptr<Collector>> collectors(wave.size());
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
          for (size_t i = t; i < wave.size(); i += 4) {
            EngineRequest r;
            r.prompt_ids = wave[i].prompt;
            r.max_tokens = wave[i].max_tokens;
            r.sampling.temperature = wave[i].temperature;
            r.sampling.seed = wave[i].seed;
            r.logprobs = 1;
            collectors[i] = std::make_shared<Collector>();
            absl::StatusOr<uint64_t> id = engine->Submit(std::move(r), collectors[i]);
            ASSERT_TRUE(id.ok()) << id.status();
            if (wave[i].cancel) engine->Cancel(*id);
          }
        });
      }
      for (std::thread& t : threads) t.join();
      for (const auto& c : collectors) {
        c->Wait(300);
        Outcome o;
        std::lock_guard<std::mutex> lock(c->mu_);
        o.status = c->status_;
        o.text = c->text_;
        for (const TokenLogprob& t : c->logprobs_) {
          o.tokens.push_back(t.token);
          o.logprobs.push_back(t.logprob);
        }
        o.usage = c->usage_;
        out.push_back(std::move(o));
      }
    }
    return out;
  }

  backend::CpuBackend cpu_{backend::CpuBackendOptions{}};
  std::unique_ptr<model::LoadedModel> model_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<model::Transformer> transformers_[2];
  std::unique_ptr<TransformerRunner> runners_[2];
};

// Prompts: BOS + the first L tokens of one of two shared random texts + a short private suffix, L at every block
// boundary ± 1 (and 0). Half greedy, half seeded sampling; every 9th cancelled at once.
std::vector<std::vector<Case>> MakeWaves() {
  std::mt19937 rng(20261203);
  std::uniform_int_distribution<int32_t> token(3, 511);
  std::vector<std::vector<int32_t>> texts(2, std::vector<int32_t>(5 * kBlock + 8));
  for (auto& t : texts) {
    for (int32_t& id : t) id = token(rng);
  }
  std::vector<Case> all;
  int n = 0;
  for (int k = 0; k <= 5; ++k) {
    for (int delta : {-1, 0, 1}) {
      const int shared = k * kBlock + delta - 1;  // BOS is the prompt's first token
      if (shared < 0) continue;
      for (int suffix : {0, 2}) {
        for (const auto& text : texts) {
          Case c;
          c.prompt.push_back(1);  // BOS
          c.prompt.insert(c.prompt.end(), text.begin(), text.begin() + shared);
          for (int i = 0; i < suffix; ++i) c.prompt.push_back(token(rng));
          if (c.prompt.size() < 2) c.prompt.push_back(token(rng));
          c.temperature = n % 2 == 0 ? 0.0f : 0.9f;
          c.seed = 1000 + n;
          c.max_tokens = 6 + n % 13;
          c.cancel = n % 9 == 4;
          all.push_back(std::move(c));
          ++n;
        }
      }
    }
  }
  // Three waves; the second repeats the first's prompts (a warm cache), the third is the rest shuffled.
  std::shuffle(all.begin(), all.end(), rng);
  const size_t third = all.size() / 3;
  std::vector<Case> first(all.begin(), all.begin() + third);
  std::vector<Case> again = first;
  for (Case& c : again) c.cancel = false;
  std::vector<Case> rest(all.begin() + third, all.end());
  return {first, again, rest};
}

TEST_F(PrefixCacheEngine, OutputsEqualACacheFreeEngineBitForBit) {
  const std::vector<std::vector<Case>> waves = MakeWaves();
  std::unique_ptr<Engine> cold = MakeEngine(0, /*prefix_cache=*/false);
  std::unique_ptr<Engine> warm = MakeEngine(1, /*prefix_cache=*/true);
  ASSERT_TRUE(cold != nullptr && warm != nullptr);
  const std::vector<Outcome> expected = Run(cold.get(), waves);
  const std::vector<Outcome> got = Run(warm.get(), waves);
  ASSERT_EQ(expected.size(), got.size());
  std::vector<const Case*> cases;
  for (const auto& wave : waves) {
    for (const Case& c : wave) cases.push_back(&c);
  }
  int compared = 0;
  int64_t cached = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const std::string what = absl::StrCat("request ", i, " (prompt ", cases[i]->prompt.size(), " tokens, T=",
                                          cases[i]->temperature, ")");
    EXPECT_EQ(expected[i].usage.cached_prompt_tokens, 0) << what;
    cached += got[i].usage.cached_prompt_tokens;
    EXPECT_EQ(got[i].usage.cached_prompt_tokens % kBlock, 0) << what;
    EXPECT_LT(got[i].usage.cached_prompt_tokens, static_cast<int>(cases[i]->prompt.size())) << what;
    if (cases[i]->cancel) {  // ended by the cancel, or finished before it arrived
      EXPECT_TRUE(got[i].status.ok() || absl::IsCancelled(got[i].status)) << what << ": " << got[i].status;
      continue;
    }
    ASSERT_TRUE(expected[i].status.ok()) << what << ": " << expected[i].status;
    ASSERT_TRUE(got[i].status.ok()) << what << ": " << got[i].status;
    EXPECT_EQ(got[i].text, expected[i].text) << what;
    EXPECT_EQ(got[i].tokens, expected[i].tokens) << what;
    EXPECT_EQ(got[i].logprobs, expected[i].logprobs) << what;  // bitwise: the same logits
    EXPECT_EQ(got[i].usage.prompt_tokens, expected[i].usage.prompt_tokens) << what;
    EXPECT_EQ(got[i].usage.completion_tokens, expected[i].usage.completion_tokens) << what;
    ++compared;
  }
  EXPECT_GT(compared, 60);
  EXPECT_GT(cached, 50 * kBlock);  // the cache did serve (the second wave alone repeats every prompt)
  // Preemption happened on both sides, and nothing leaked: every block is free (cached ones reclaimable).
  const EngineStats cs = cold->Stats(), ws = warm->Stats();
  EXPECT_GT(cs.preemptions, 0);
  EXPECT_GT(ws.preemptions, 0);
  EXPECT_EQ(cs.kv_blocks_free, cs.kv_blocks_total);
  EXPECT_EQ(ws.kv_blocks_free, ws.kv_blocks_total);
  EXPECT_EQ(cs.kv_blocks_cached, 0);
  EXPECT_GT(ws.kv_blocks_cached, 0);
}

TEST_F(PrefixCacheEngine, TheSamePromptTwiceReusesAllButItsLastBlockAndTheCacheFreesUnderPressure) {
  std::unique_ptr<Engine> engine = MakeEngine(1, /*prefix_cache=*/true);
  ASSERT_TRUE(engine != nullptr);
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 3 * kBlock + 5; ++i) prompt.push_back(3 + (i * 37) % 500);
  std::vector<Outcome> outs = Run(engine.get(), {{Case{prompt, 0, 0, 4}}, {Case{prompt, 0, 0, 4}}});
  ASSERT_TRUE(outs[0].status.ok() && outs[1].status.ok());
  EXPECT_EQ(outs[0].usage.cached_prompt_tokens, 0);
  EXPECT_EQ(outs[1].usage.cached_prompt_tokens, 3 * kBlock);
  EXPECT_EQ(outs[1].text, outs[0].text);
  EXPECT_LT(outs[1].usage.tensor_ops, outs[0].usage.tensor_ops);  // the cached prefix was not computed
  // Fill the pool with other prompts: the cached blocks are evicted to make room, nothing fails.
  std::vector<Case> others;
  for (int j = 0; j < 12; ++j) {
    std::vector<int32_t> p = {1};
    for (int i = 0; i < 200; ++i) p.push_back(3 + (i * 13 + j * 101) % 500);
    others.push_back(Case{p, 0, 0, 8});
  }
  for (const Outcome& o : Run(engine.get(), {others})) EXPECT_TRUE(o.status.ok()) << o.status;
  const EngineStats s = engine->Stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
}

}  // namespace
}  // namespace qrag::engine
