#include "server/engine/sampler.h"

#include <cmath>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace qrag::engine {
namespace {

using ::testing::HasSubstr;

std::vector<float> Logits(std::initializer_list<float> v) { return std::vector<float>(v); }

SamplingParams Params(float temperature, float top_p = 1.0f, int top_k = 0, float min_p = 0.0f,
                      uint64_t seed = 42) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.top_k = top_k;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

// Empirical distribution of `draws` samples.
std::map<int, double> Histogram(const SamplingParams& p, const std::vector<float>& logits, int draws,
                                std::vector<int32_t> history = {}) {
  Sampler s(p);
  std::map<int, double> h;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l = logits;
    h[s.Sample(absl::MakeSpan(l), history)] += 1.0 / draws;
  }
  return h;
}

TEST(Sampler, GreedyPicksFirstMaximum) {
  Sampler s(Params(0.0f));
  auto l = Logits({1, 5, 3, 5});
  EXPECT_EQ(s.Sample(absl::MakeSpan(l), {}), 1);
}

TEST(Sampler, SameSeedSameSequence_DifferentSeedDifferent) {
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  auto run = [&](uint64_t seed) {
    Sampler s(Params(1.0f, 1.0f, 0, 0.0f, seed));
    std::vector<int> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> l = logits;
      out.push_back(s.Sample(absl::MakeSpan(l), {}));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
  EXPECT_EQ(run(0), run(0));  // seed 0 is valid and reproducible too
}

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  auto h = Histogram(Params(1.0f), logits, 20000);
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  EXPECT_NEAR(h[0], 1 / z, 0.015);
  EXPECT_NEAR(h[1], std::exp(1.0) / z, 0.015);
  EXPECT_NEAR(h[2], std::exp(2.0) / z, 0.015);
}

TEST(Sampler, TopKKeepsOnlyK) {
  auto h = Histogram(Params(1.0f, 1.0f, 2), {0.0f, 0.1f, 3.0f, 2.9f}, 2000);
  EXPECT_EQ(h.count(0) + h.count(1), 0u);
  EXPECT_GT(h[2], 0.4);
  EXPECT_GT(h[3], 0.4);
}

TEST(Sampler, TopPKeepsNucleus) {
  // Probabilities ~ 0.6, 0.3, 0.1: top_p 0.8 keeps the first two only.
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  auto h = Histogram(Params(1.0f, 0.8f), logits, 4000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_NEAR(h[0], 2.0 / 3, 0.03);
}

TEST(Sampler, MinPDropsUnlikely) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.4f), std::log(0.1f)};
  auto h = Histogram(Params(1.0f, 1.0f, 0, 0.3f), logits, 4000);  // threshold 0.15
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_NEAR(h[0], 5.0 / 9, 0.03);
}

TEST(Sampler, RepetitionPenaltyDiscouragesSeenTokens) {
  SamplingParams p = Params(0.0f);
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  auto l = Logits({2.0f, 1.5f, -1.0f});
  const std::vector<int32_t> history = {0};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l), history), 1);  // 2.0 / 2 = 1.0 < 1.5
  auto l2 = Logits({-1.0f, -1.5f});
  const std::vector<int32_t> h2 = {0};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l2), h2), 1);  // -1 * 2 = -2 < -1.5
}

TEST(Sampler, ExtremeLogitsStayFinite) {
  Sampler s(Params(0.01f, 0.5f, 3, 0.1f));
  auto l = Logits({1e30f, -1e30f, 0.0f, 3e38f});
  int32_t t = s.Sample(absl::MakeSpan(l), {});
  EXPECT_GE(t, 0);
  EXPECT_LT(t, 4);
}

// Issue 16 item 4: temperatures (and penalties) so small that logits / temperature overflows used to give a
// NaN softmax and the last token of the vocabulary; they must act as greedy, in every sampling mode.
TEST(Sampler, TinyTemperature_IsGreedy_NotTheLastToken) {
  for (float temperature : {1e-45f, 1e-38f, 1e-30f}) {
    for (float top_p : {1.0f, 0.9f}) {
      for (int top_k : {0, 2}) {
        SCOPED_TRACE(absl::StrCat("temperature ", temperature, " top_p ", top_p, " top_k ", top_k));
        Sampler s(Params(temperature, top_p, top_k));
        for (int i = 0; i < 6; ++i) {
          auto l = Logits({0.5f, 9.0f, -3.0f, 8.5f, -20.0f});
          EXPECT_EQ(s.Sample(absl::MakeSpan(l), {}), 1);
        }
        auto negative = Logits({-7.0f, -2.0f, -9.0f});  // every scaled logit overflows to -inf
        EXPECT_EQ(s.Sample(absl::MakeSpan(negative), {}), 1);
      }
    }
  }
}

TEST(Sampler, TinyRepetitionPenalty_NoNaN_PicksThePenalizedMaximum) {
  SamplingParams p = Params(0.7f);
  p.repetition_penalty = 1e-45f;  // divides the seen positive logit by 1e-45: +inf
  Sampler s(p);
  auto l = Logits({0.5f, 9.0f, 2.0f, 8.5f});
  const std::vector<int32_t> history = {2};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l), history), 2);
}

TEST(SamplingParamsValidation, RejectsEachBadField) {
  struct Case {
    SamplingParams p;
    const char* field;
  };
  SamplingParams base = Params(1.0f);
  std::vector<Case> cases;
  auto with = [&](auto mutate, const char* field) {
    SamplingParams p = base;
    mutate(p);
    cases.push_back({p, field});
  };
  with([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
  with([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  with([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  with([](SamplingParams& p) { p.top_p = 1.5f; }, "top_p");
  with([](SamplingParams& p) { p.top_k = -1; }, "top_k");
  with([](SamplingParams& p) { p.min_p = -0.5f; }, "min_p");
  with([](SamplingParams& p) { p.min_p = 2.0f; }, "min_p");
  with([](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty");
  with([](SamplingParams& p) { p.repetition_penalty = INFINITY; }, "repetition_penalty");
  for (const Case& c : cases) {
    EXPECT_THAT(ValidateSamplingParams(c.p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_TRUE(ValidateSamplingParams(base).ok());
}

}  // namespace
}  // namespace qrag::engine
