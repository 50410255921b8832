#include "server/api/validation.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace qrag::api {
namespace {

using ::testing::HasSubstr;

ValidationOptions Options() {
  ValidationOptions o;
  o.models = {"stories260K", "other"};
  o.max_prompt_bytes = 64;
  o.max_logprobs = 5;
  o.max_stop_strings = 2;
  o.max_stop_bytes = 8;
  return o;
}

qrag::v1::GenerateRequest Valid() {
  qrag::v1::GenerateRequest r;
  r.set_prompt("Once upon a time");
  return r;
}

absl::Status Check(const qrag::v1::GenerateRequest& r) { return ValidateGenerateRequest(r, Options()).status(); }

TEST(ValidateGenerateRequest, DefaultsWhenUnset) {
  absl::StatusOr<ValidatedRequest> v = ValidateGenerateRequest(Valid(), Options());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->model, "stories260K");  // empty model: the default (first)
  EXPECT_EQ(v->request.prompt, "Once upon a time");
  EXPECT_EQ(v->request.max_tokens, 16);
  EXPECT_EQ(v->request.sampling.temperature, 1.0f);
  EXPECT_EQ(v->request.sampling.top_p, 1.0f);
  EXPECT_EQ(v->request.sampling.top_k, 0);
  EXPECT_EQ(v->request.sampling.min_p, 0.0f);
  EXPECT_EQ(v->request.sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(v->request.sampling.seed.has_value());
  EXPECT_TRUE(v->request.stop.empty());
  EXPECT_EQ(v->request.logprobs, 0);
  EXPECT_EQ(v->request.deadline, absl::InfiniteFuture());
}

TEST(ValidateGenerateRequest, EveryFieldIsCopied) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_model("other");
  r.set_max_tokens(7);
  r.set_temperature(0.5f);
  r.set_top_p(0.9f);
  r.set_top_k(40);
  r.set_min_p(0.05f);
  r.set_repetition_penalty(1.1f);
  r.set_seed(133742);
  r.add_stop("\n\n");
  r.add_stop("The end");
  r.set_logprobs(5);
  absl::StatusOr<ValidatedRequest> v = ValidateGenerateRequest(r, Options());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->model, "other");
  EXPECT_EQ(v->request.max_tokens, 7);
  EXPECT_EQ(v->request.sampling.temperature, 0.5f);
  EXPECT_EQ(v->request.sampling.top_p, 0.9f);
  EXPECT_EQ(v->request.sampling.top_k, 40);
  EXPECT_EQ(v->request.sampling.min_p, 0.05f);
  EXPECT_EQ(v->request.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(v->request.sampling.seed, 133742u);
  EXPECT_THAT(v->request.stop, ::testing::ElementsAre("\n\n", "The end"));
  EXPECT_EQ(v->request.logprobs, 5);
}

TEST(ValidateGenerateRequest, ZeroTemperatureIsGreedyAndSeedZeroIsASeed) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_temperature(0);
  r.set_seed(0);
  absl::StatusOr<ValidatedRequest> v = ValidateGenerateRequest(r, Options());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->request.sampling.temperature, 0.0f);
  ASSERT_TRUE(v->request.sampling.seed.has_value());
  EXPECT_EQ(*v->request.sampling.seed, 0u);
}

TEST(ValidateGenerateRequest, UnknownModelIsNotFoundListingServed) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_model("gpt-5");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kNotFound,
                                          ::testing::AllOf(HasSubstr("'gpt-5'"), HasSubstr("stories260K, other"))));
}

TEST(ValidateGenerateRequest, Prompt) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_prompt("");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt is empty")));
  r.set_prompt(std::string(65, 'a'));
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::AllOf(HasSubstr("65 bytes"), HasSubstr("at most 64"))));
  r.set_prompt(std::string(64, 'a'));
  EXPECT_TRUE(Check(r).ok());
  r.set_prompt("abc\xff");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt: invalid UTF-8 at byte 3")));
  r.set_prompt("\xed\xa0\x80");  // a UTF-16 surrogate encoded in UTF-8
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid UTF-8")));
  r.set_prompt("h\xc3\xa9llo \xe2\x9c\x93");
  EXPECT_TRUE(Check(r).ok());
}

TEST(ValidateGenerateRequest, MaxTokens) {
  qrag::v1::GenerateRequest r = Valid();
  for (int bad : {0, -1, std::numeric_limits<int32_t>::min()}) {
    r.set_max_tokens(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tokens must be > 0")))
        << bad;
  }
  r.set_max_tokens(1);
  EXPECT_TRUE(Check(r).ok());
}

TEST(ValidateGenerateRequest, Temperature) {
  qrag::v1::GenerateRequest r = Valid();
  for (float bad : {-0.1f, -1.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    r.set_temperature(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature must be")))
        << bad;
  }
  for (float good : {0.0f, 0.7f, 2.0f}) {
    r.set_temperature(good);
    EXPECT_TRUE(Check(r).ok()) << good;
  }
}

TEST(ValidateGenerateRequest, TopP) {
  qrag::v1::GenerateRequest r = Valid();
  for (float bad : {0.0f, -0.5f, 1.5f, std::nanf("")}) {
    r.set_top_p(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p must be in (0, 1]")))
        << bad;
  }
  for (float good : {0.01f, 0.9f, 1.0f}) {
    r.set_top_p(good);
    EXPECT_TRUE(Check(r).ok()) << good;
  }
}

TEST(ValidateGenerateRequest, TopK) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_top_k(-1);
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k must be >= 0")));
  r.set_top_k(0);
  EXPECT_TRUE(Check(r).ok());
  r.set_top_k(1000000);  // larger than the vocabulary: keeps everything
  EXPECT_TRUE(Check(r).ok());
}

TEST(ValidateGenerateRequest, MinP) {
  qrag::v1::GenerateRequest r = Valid();
  for (float bad : {-0.01f, 1.01f, std::nanf("")}) {
    r.set_min_p(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_p must be in [0, 1]")))
        << bad;
  }
  for (float good : {0.0f, 0.1f, 1.0f}) {
    r.set_min_p(good);
    EXPECT_TRUE(Check(r).ok()) << good;
  }
}

TEST(ValidateGenerateRequest, RepetitionPenalty) {
  qrag::v1::GenerateRequest r = Valid();
  for (float bad : {0.0f, -1.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    r.set_repetition_penalty(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("repetition_penalty must be a finite number > 0")))
        << bad;
  }
  r.set_repetition_penalty(0.5f);
  EXPECT_TRUE(Check(r).ok());
}

TEST(ValidateGenerateRequest, Stop) {
  qrag::v1::GenerateRequest r = Valid();
  r.add_stop("a");
  r.add_stop("");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop[1] is empty")));
  r.clear_stop();
  r.add_stop("123456789");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::AllOf(HasSubstr("stop[0] is 9 bytes"), HasSubstr("at most 8"))));
  r.clear_stop();
  r.add_stop("ok");
  r.add_stop("x\xc3");  // truncated 2-byte sequence
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop[1]: invalid UTF-8")));
  r.clear_stop();
  r.add_stop("a");
  r.add_stop("b");
  r.add_stop("c");
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::AllOf(HasSubstr("3 strings"), HasSubstr("at most 2"))));
}

TEST(ValidateGenerateRequest, Logprobs) {
  qrag::v1::GenerateRequest r = Valid();
  for (int bad : {-1, 6}) {
    r.set_logprobs(bad);
    EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("logprobs must be in [0, 5]")))
        << bad;
  }
  r.set_logprobs(5);
  EXPECT_TRUE(Check(r).ok());
}

TEST(ValidateGenerateRequest, FirstErrorInDocumentedOrder) {
  qrag::v1::GenerateRequest r;  // empty prompt AND bad temperature AND unknown model
  r.set_model("nope");
  r.set_temperature(-1);
  EXPECT_THAT(Check(r), ::StatusIsCode(absl::StatusCode::kNotFound));
  r.clear_model();
  EXPECT_THAT(Check(r), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt")));
}

TEST(ResolveModel, DefaultAndExactNames) {
  const std::vector<std::string> models = {"a", "b"};
  EXPECT_EQ(*ResolveModel("", models), "a");
  EXPECT_EQ(*ResolveModel("b", models), "b");
  EXPECT_THAT(ResolveModel("B", models), ::StatusIsCode(absl::StatusCode::kNotFound));
}

TEST(ParseGenerateRequest, RoundTrip) {
  qrag::v1::GenerateRequest r = Valid();
  r.set_max_tokens(3);
  r.add_stop("x");
  absl::StatusOr<qrag::v1::GenerateRequest> parsed = ParseGenerateRequest(r.SerializeAsString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->prompt(), "Once upon a time");
  EXPECT_EQ(parsed->max_tokens(), 3);
  EXPECT_TRUE(parsed->has_max_tokens());
  EXPECT_FALSE(parsed->has_temperature());
}

// Hand-encoded wire bytes: field 2 (prompt) / 10 (stop) / 1 (model), wire type 2 (length-delimited).
std::string Field(int number, const std::string& payload) {
  std::string out;
  out.push_back(static_cast<char>((number << 3) | 2));
  out.push_back(static_cast<char>(payload.size()));
  return out + payload;
}

TEST(ParseGenerateRequest, InvalidUtf8NamesTheField) {
  EXPECT_THAT(ParseGenerateRequest(Field(2, "ab\xff")),
              ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt: invalid UTF-8 at byte 2")));
  EXPECT_THAT(ParseGenerateRequest(Field(2, "ok") + Field(10, "fine") + Field(10, "\xc0\xaf")),
              ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop[1]: invalid UTF-8 at byte 0")));
  EXPECT_THAT(ParseGenerateRequest(Field(1, "m\xfe") + Field(2, "ok")),
              ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model: invalid UTF-8")));
}

TEST(ParseGenerateRequest, GarbageIsInvalidArgument) {
  EXPECT_THAT(ParseGenerateRequest("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
              ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("qrag.v1.GenerateRequest")));
  // A prompt field whose length runs past the end of the message.
  EXPECT_THAT(ParseGenerateRequest(std::string("\x12\x10" "ab")),
              ::StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ParseGenerateRequest("").ok());  // all defaults; validation then rejects the empty prompt
}

}  // namespace
}  // namespace qrag::api
