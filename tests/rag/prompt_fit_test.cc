// FitRagPrompt: passages are dropped lowest-ranked first, the best one is cut at a character boundary when
// it alone does not fit, and a question that cannot fit is OUT_OF_RANGE. Token counts here are bytes (any
// monotone count works; the server passes the generator's tokenizer).
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rag/prompt_builder.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

absl::StatusOr<int> Bytes(const std::string& s) { return static_cast<int>(s.size()); }

int PromptBytes(const std::string& q, const std::vector<std::string>& passages) {
  return static_cast<int>(BuildRagPrompt(q, passages, "")->size());
}

TEST(FitRagPrompt, EverythingFits_AllPassagesWhole) {
  const std::vector<std::string> p = {"alpha", "beta", "gamma"};
  auto f = FitRagPrompt("Q?", p, "", PromptBytes("Q?", p), Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 3);
  EXPECT_FALSE(f->last_truncated);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", p, ""));
  EXPECT_EQ(f->prompt_tokens, PromptBytes("Q?", p));
}

TEST(FitRagPrompt, TooLong_DropsLowestRankedFirst) {
  const std::vector<std::string> p = {"best passage", "second passage", "third passage"};
  // One byte short of holding all three: the third goes; exactly two fit.
  auto f = FitRagPrompt("Q?", p, "", PromptBytes("Q?", p) - 1, Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 2);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", {p[0], p[1]}, ""));
  f = FitRagPrompt("Q?", p, "", PromptBytes("Q?", {p[0]}), Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 1);
  EXPECT_FALSE(f->last_truncated);
}

TEST(FitRagPrompt, ManyPassages_BinarySearchTokenizesLogarithmicallyOften) {
  std::vector<std::string> p;
  for (int i = 0; i < 64; ++i) p.push_back("passage number " + std::to_string(i));
  const std::vector<std::string> first10(p.begin(), p.begin() + 10);
  int calls = 0;
  auto counting = [&calls](const std::string& s) -> absl::StatusOr<int> {
    ++calls;
    return static_cast<int>(s.size());
  };
  auto f = FitRagPrompt("Q?", p, "", PromptBytes("Q?", first10), counting);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 10);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", first10, ""));
  EXPECT_LE(calls, 2 + 6);  // all, none, then log2(64) probes
}

TEST(FitRagPrompt, BestPassageTooLong_CutToTheLongestFittingPrefix) {
  const std::string best = "0123456789abcdefghij";
  const int budget = PromptBytes("Q?", {best.substr(0, 7)});
  auto f = FitRagPrompt("Q?", {best, "x"}, "", budget, Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 1);
  EXPECT_TRUE(f->last_truncated);
  EXPECT_EQ(f->last_passage_bytes, 7u);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", {"0123456"}, ""));
  EXPECT_LE(f->prompt_tokens, budget);
}

TEST(FitRagPrompt, CutNeverSplitsAUtf8Character) {
  const std::string best = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";  // four two-byte characters
  // Room for 5 bytes of passage: the cut keeps two whole characters (4 bytes), not 2.5.
  auto f = FitRagPrompt("Q?", {best}, "", PromptBytes("Q?", {""}) + 5, Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->last_truncated);
  EXPECT_EQ(f->last_passage_bytes, 4u);
}

TEST(FitRagPrompt, NoCharacterOfTheBestPassageFits_NoPassages) {
  const int budget = PromptBytes("Q?", {});
  auto f = FitRagPrompt("Q?", {"long passage"}, "", budget, Bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 0);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", {}, ""));
}

TEST(FitRagPrompt, QuestionAloneTooLong_OutOfRangeNamingTheFix) {
  auto f = FitRagPrompt("a very long question indeed?", {"p"}, "", 10, Bytes);
  EXPECT_THAT(f, StatusIsCode(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(std::string(f.status().message()), ::testing::HasSubstr("lower max_tokens"));
}

TEST(FitRagPrompt, TemplateWithoutQuestion_InvalidArgument) {
  EXPECT_THAT(FitRagPrompt("Q", {"p"}, "{context}", 100, Bytes), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

TEST(FitRagPrompt, CounterError_Propagates) {
  auto failing = [](const std::string&) -> absl::StatusOr<int> { return absl::InternalError("tokenizer broke"); };
  EXPECT_THAT(FitRagPrompt("Q", {"p"}, "", 100, failing), StatusIsCode(absl::StatusCode::kInternal));
}


TEST(PassageOrder, Canonical_ByDocumentThenChunk_WhateverTheRanks) {
  const std::vector<PassageKey> keys = {{"b", 2}, {"a", 7}, {"b", 0}, {"a", 1}};
  // position[i]: where rank i goes in the prompt.
  EXPECT_THAT(PromptPositions(keys, 4, PassageOrder::kCanonical), ::testing::ElementsAre(3, 1, 2, 0));
  EXPECT_THAT(PromptPositions(keys, 4, PassageOrder::kRank), ::testing::ElementsAre(0, 1, 2, 3));
  // Only the first `count` (those kept) are ordered.
  EXPECT_THAT(PromptPositions(keys, 2, PassageOrder::kCanonical), ::testing::ElementsAre(1, 0));
  EXPECT_THAT(ArrangePassages({"b2", "a7", "b0", "a1"}, keys, PassageOrder::kCanonical),
              ::testing::ElementsAre("a1", "a7", "b0", "b2"));
  EXPECT_THAT(ArrangePassages({"b2", "a7"}, keys, PassageOrder::kRank), ::testing::ElementsAre("b2", "a7"));
  // The same passages under other ranks: the same arrangement (what lets the prefix cache share the context).
  const std::vector<PassageKey> reranked = {{"a", 1}, {"b", 0}, {"b", 2}, {"a", 7}};
  EXPECT_THAT(ArrangePassages({"a1", "b0", "b2", "a7"}, reranked, PassageOrder::kCanonical),
              ::testing::ElementsAre("a1", "a7", "b0", "b2"));
  // Equal keys (the same chunk listed twice) keep rank order; chunk indices compare as numbers (2 < 10).
  EXPECT_THAT(PromptPositions({{"d", 10}, {"d", 2}, {"d", 2}}, 3, PassageOrder::kCanonical),
              ::testing::ElementsAre(2, 0, 1));
}

TEST(FitRagPrompt, Arranged_DropsByRank_CountsAndBuildsTheArrangedPrompt) {
  const std::vector<std::string> p = {"zeta best", "alpha second", "mu third"};
  const std::vector<PassageKey> keys = {{"z", 0}, {"a", 0}, {"m", 0}};
  auto arrange = [&](std::vector<std::string> kept) {
    return ArrangePassages(std::move(kept), keys, PassageOrder::kCanonical);
  };
  std::vector<std::string> counted;
  auto count = [&](const std::string& s) -> absl::StatusOr<int> {
    counted.push_back(s);
    return static_cast<int>(s.size());
  };
  // Room for two: the third-ranked goes (not the last in the prompt), and the two kept are in key order.
  auto f = FitRagPrompt("Q?", p, "", PromptBytes("Q?", {p[1], p[0]}), count, arrange);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->passages_used, 2);
  EXPECT_EQ(f->prompt, *BuildRagPrompt("Q?", {"alpha second", "zeta best"}, ""));
  EXPECT_EQ(f->prompt_tokens, static_cast<int>(f->prompt.size()));
  // Every prompt counted was an arranged one.
  for (const std::string& s : counted) {
    if (s.find("zeta") != std::string::npos && s.find("alpha") != std::string::npos) {
      EXPECT_LT(s.find("alpha"), s.find("zeta")) << s;
    }
  }
}

}  // namespace
}  // namespace qrag::rag
