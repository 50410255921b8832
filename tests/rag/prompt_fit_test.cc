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

}  // namespace
}  // namespace qrag::rag
