#include "server/api/openai_json.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::api::openai {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

absl::Status ChatError(const std::string& body) { return ParseChatCompletionRequest(body).status(); }
absl::Status CompletionError(const std::string& body) { return ParseCompletionRequest(body).status(); }

TEST(OpenAiChatRequest, MapsEveryServedParameter) {
  auto r = ParseChatCompletionRequest(R"({
    "model": "smol", "messages": [{"role": "developer", "content": "Be brief."},
                                  {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                                  {"role": "assistant", "content": null, "name": "bot"}],
    "max_completion_tokens": 12, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\n", "END"], "seed": 7, "n": 1,
    "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3,
    "frequency_penalty": 0, "presence_penalty": 0.0, "logit_bias": {}, "user": "u1", "tools": [],
    "response_format": {"type": "text"}, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
    "rag": {"collection": "docs", "top_k": 3, "min_score": 0.2, "filter": {"lang": "en"}, "passage_order": "rank",
            "mode": "bm25"},
    "add_generation_prompt": true})");
  ASSERT_TRUE(r.ok()) << r.status();
  const qrag::v1::ChatRequest& q = r->request;
  EXPECT_EQ(q.model(), "smol");
  ASSERT_EQ(q.messages_size(), 3);
  EXPECT_EQ(q.messages(0).role(), "system");  // developer is OpenAI's newer name for system
  EXPECT_EQ(q.messages(1).content(), "a\nb");
  EXPECT_EQ(q.messages(2).role(), "assistant");
  EXPECT_EQ(q.messages(2).content(), "");
  EXPECT_EQ(q.max_tokens(), 12);
  EXPECT_FLOAT_EQ(q.temperature(), 0.5f);
  EXPECT_FLOAT_EQ(q.top_p(), 0.9f);
  EXPECT_THAT(std::vector<std::string>(q.stop().begin(), q.stop().end()), ::testing::ElementsAre("\n\n", "END"));
  EXPECT_EQ(q.seed(), 7u);
  EXPECT_EQ(q.logprobs(), 3);
  EXPECT_EQ(q.top_k(), 40);
  EXPECT_FLOAT_EQ(q.min_p(), 0.05f);
  EXPECT_FLOAT_EQ(q.repetition_penalty(), 1.1f);
  EXPECT_EQ(q.rag().collection(), "docs");
  EXPECT_EQ(q.rag().top_k(), 3);
  EXPECT_EQ(q.rag().filter().at("lang"), "en");
  EXPECT_EQ(q.rag().passage_order(), qrag::v1::PASSAGE_ORDER_RANK);
  EXPECT_EQ(q.rag().mode(), qrag::v1::SEARCH_MODE_BM25);
  EXPECT_TRUE(q.add_generation_prompt());
  EXPECT_TRUE(r->answer.stream);
  EXPECT_TRUE(r->answer.include_usage);
  EXPECT_TRUE(r->answer.logprobs);
  EXPECT_EQ(r->answer.top_logprobs, 3);
  EXPECT_TRUE(r->answer.max_tokens_given);
}

TEST(OpenAiChatRequest, DefaultsAndNullsMeanNotGiven) {
  auto r = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": "hi"}], "temperature": null, "max_tokens": null, "stop": "x"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->request.has_temperature());
  EXPECT_FALSE(r->request.has_max_tokens());
  EXPECT_FALSE(r->answer.max_tokens_given);
  EXPECT_EQ(r->request.stop_size(), 1);
  EXPECT_EQ(r->request.logprobs(), 0);
  EXPECT_FALSE(r->answer.stream);
  EXPECT_EQ(r->request.seed(), 0u);
  EXPECT_FALSE(r->request.has_seed());
}

TEST(OpenAiChatRequest, LogprobsWithoutAlternativesStillAsksTheEngineForOne) {
  auto r = ParseChatCompletionRequest(R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.logprobs(), 1);
  EXPECT_EQ(r->answer.top_logprobs, 0);
}

TEST(OpenAiChatRequest, NegativeSeedKeepsItsBits) {
  auto r = ParseChatCompletionRequest(R"({"messages": [{"role": "user", "content": "hi"}], "seed": -1})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.seed(), ~uint64_t{0});
}

struct Refusal {
  const char* body;
  const char* param;
  const char* says;
};

class OpenAiChatRefusal : public ::testing::TestWithParam<Refusal> {};

TEST_P(OpenAiChatRefusal, NamesTheParameter) {
  const absl::Status s = ChatError(GetParam().body);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << GetParam().body;
  EXPECT_EQ(ParamOf(s, true), GetParam().param) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().says));
}

#define MSG R"("messages": [{"role": "user", "content": "hi"}])"
INSTANTIATE_TEST_SUITE_P(
    All, OpenAiChatRefusal,
    ::testing::Values(
        Refusal{"", "", "body is empty"}, Refusal{"[1]", "", "must be a JSON object"},
        Refusal{"{\"messages\": ", "", "invalid JSON"}, Refusal{"{}", "messages", "messages is required"},
        Refusal{R"({"messages": "hi"})", "messages", "must be an array"},
        Refusal{R"({"messages": [{"content": "hi"}]})", "messages[0]", "role is required"},
        Refusal{R"({"messages": [{"role": "function", "content": "x"}]})", "messages[0]", "function"},
        Refusal{R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})",
                "messages[0].content[0]", "text parts only"},
        Refusal{R"({"messages": [{"role": "user", "content": 3}]})", "messages[0].content", "a string or an array"},
        Refusal{R"({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]})", "messages[0]",
                "tool_calls"},
        Refusal{R"({"messages": [{"role": "user", "content": "x", "colour": 1}]})", "messages[0]", "colour"},
        Refusal{"{" MSG R"(, "n": 2})", "n", "n must be 1"},
        Refusal{"{" MSG R"(, "n": 0})", "n", "must be in [1"},
        Refusal{"{" MSG R"(, "max_tokens": 0})", "max_tokens", "must be in [1"},
        Refusal{"{" MSG R"(, "max_tokens": 2.5})", "max_tokens", "an integer"},
        Refusal{"{" MSG R"(, "max_tokens": "5"})", "max_tokens", "an integer"},
        Refusal{"{" MSG R"(, "max_tokens": 4, "max_completion_tokens": 5})", "max_completion_tokens", "differ"},
        Refusal{"{" MSG R"(, "temperature": "hot"})", "temperature", "a number"},
        Refusal{"{" MSG R"(, "stop": [1]})", "stop", "a string or an array of strings"},
        Refusal{"{" MSG R"(, "stream": "yes"})", "stream", "true or false"},
        Refusal{"{" MSG R"(, "stream_options": {"include_usage": true}})", "stream_options", "only allowed when stream"},
        Refusal{"{" MSG R"(, "stream": true, "stream_options": {"x": 1}})", "stream_options", "unrecognized"},
        Refusal{"{" MSG R"(, "top_logprobs": 2})", "top_logprobs", "needs logprobs: true"},
        Refusal{"{" MSG R"(, "frequency_penalty": 0.5})", "frequency_penalty", "repetition_penalty"},
        Refusal{"{" MSG R"(, "presence_penalty": -1})", "presence_penalty", "repetition_penalty"},
        Refusal{"{" MSG R"(, "logit_bias": {"50": 10}})", "logit_bias", "not supported"},
        Refusal{"{" MSG R"(, "tools": [{"type": "function"}]})", "tools", "tool calling"},
        Refusal{"{" MSG R"(, "tool_choice": "auto"})", "tool_choice", "tool calling"},
        Refusal{"{" MSG R"(, "response_format": {"type": "json_object"}})", "response_format", "structured output"},
        Refusal{"{" MSG R"(, "temprature": 0})", "temprature", "unrecognized request argument supplied: 'temprature'"},
        Refusal{"{" MSG R"(, "rag": {"collection": "d", "topk": 3}})", "rag", "rag.unrecognized"},
        Refusal{"{" MSG R"(, "rag": {"collection": 5}})", "rag", "rag.collection must be a string"},
        Refusal{"{" MSG R"(, "rag": {"collection": "d", "filter": {"a": 1}}})", "rag", "rag.filter.'a'"},
        Refusal{"{" MSG R"(, "rag": {"collection": "d", "passage_order": "score"}})", "rag",
                "rag.passage_order must be \"canonical\" or \"rank\" (got 'score')"},
        Refusal{"{" MSG R"(, "rag": {"collection": "d", "passage_order": 2}})", "rag", "rag.passage_order must be a string"},
        Refusal{"{" MSG R"(, "rag": {"collection": "d", "mode": "sparse"}})", "rag",
                "rag.mode must be \"hybrid\", \"dense\" or \"bm25\" (got 'sparse')"},
        Refusal{"{" MSG R"(, "seed": 1e30})", "seed", "an integer"}));

TEST(OpenAiCompletionRequest, PromptForms) {
  auto one = ParseCompletionRequest(R"({"prompt": ["Once upon"], "max_tokens": 3, "logprobs": 2, "echo": false})");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->request.prompt(), "Once upon");
  EXPECT_EQ(one->request.logprobs(), 2);
  EXPECT_TRUE(one->answer.logprobs);
  EXPECT_EQ(one->answer.top_logprobs, 2);
  EXPECT_EQ(ParamOf(CompletionError(R"({"prompt": ["a", "b"]})"), false), "prompt");
  EXPECT_THAT(std::string(CompletionError(R"({"prompt": ["a", "b"]})").message()), HasSubstr("one prompt per request"));
  EXPECT_THAT(std::string(CompletionError(R"({"prompt": [1, 2]})").message()), HasSubstr("token ids"));
  EXPECT_THAT(std::string(CompletionError(R"({"max_tokens": 2})").message()), HasSubstr("prompt is required"));
  EXPECT_EQ(ParamOf(CompletionError(R"({"prompt": "x", "echo": true})"), false), "echo");
  EXPECT_EQ(ParamOf(CompletionError(R"({"prompt": "x", "best_of": 3})"), false), "best_of");
  EXPECT_EQ(ParamOf(CompletionError(R"({"prompt": "x", "suffix": "y"})"), false), "suffix");
  EXPECT_EQ(ParamOf(CompletionError(R"({"prompt": "x", "messages": []})"), false), "messages");
}

TEST(OpenAiEmbeddingsRequest, InputsAndFormat) {
  auto r = ParseEmbeddingsRequest(R"({"input": ["a", "b"], "model": "m", "encoding_format": "base64", "user": "u"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->inputs, ::testing::ElementsAre("a", "b"));
  EXPECT_TRUE(r->base64);
  EXPECT_EQ(r->model, "m");
  auto single = ParseEmbeddingsRequest(R"({"input": "a", "dimensions": 384})");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->inputs.size(), 1u);
  EXPECT_EQ(single->dimensions, 384);
  EXPECT_FALSE(single->base64);
  EXPECT_EQ(ParamOf(ParseEmbeddingsRequest(R"({"input": []})").status(), false), "input");
  EXPECT_EQ(ParamOf(ParseEmbeddingsRequest(R"({"input": [[1, 2]]})").status(), false), "input");
  EXPECT_EQ(ParamOf(ParseEmbeddingsRequest(R"({"input": "a", "encoding_format": "int8"})").status(), false),
            "encoding_format");
  EXPECT_EQ(ParamOf(ParseEmbeddingsRequest(R"({})").status(), false), "input");
}

TEST(OpenAiParamOf, ReadsQragValidationMessages) {
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("temperature must be a finite number >= 0 (got -1)"), true),
            "temperature");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("stop[2] is empty"), true), "stop");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("messages[0].role is \"x\""), true), "messages");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("logprobs must be in [0, 20] (got 30)"), true), "top_logprobs");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("logprobs must be in [0, 20] (got 30)"), false), "logprobs");
  EXPECT_EQ(ParamOf(absl::NotFoundError("model \"x\" is not served here"), true), "model");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("max_tokens 9000 plus the prompt's 3 tokens exceeds"), true),
            "max_tokens");
  EXPECT_EQ(ParamOf(absl::UnavailableError("model loading"), true), "");
}

TEST(OpenAiErrors, StatusCodesAndObjects) {
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInternal), 500);
  const json e = ErrorObject(absl::NotFoundError("model \"x\" is not served here"), "model");
  EXPECT_EQ(e["error"]["type"], "not_found_error");
  EXPECT_EQ(e["error"]["code"], "model_not_found");
  EXPECT_EQ(e["error"]["param"], "model");
  const json bad = ErrorObject(absl::InvalidArgumentError("n must be 1"), "");
  EXPECT_EQ(bad["error"]["type"], "invalid_request_error");
  EXPECT_EQ(bad["error"]["code"], "invalid_argument");
  EXPECT_TRUE(bad["error"]["param"].is_null());
}

Result SampleResult() {
  Result r;
  r.id = "chatcmpl-1";
  r.created = 1700000000;
  r.model = "smol";
  r.text = "Hi";
  r.finish_reason = "stop";
  r.logprobs = {{"H", -0.5f, {{"H", -0.5f}, {"Hello", -1.5f}}}, {"i", -0.25f, {{"i", -0.25f}, {"\xE2\x82", -3.0f}}}};
  r.usage.prompt_tokens = 10;
  r.usage.completion_tokens = 2;
  r.usage.energy_joules = 1.5;
  r.usage.tensor_ops = 1234;
  return r;
}

TEST(OpenAiAnswers, ChatCompletionObject) {
  AnswerOptions answer;
  answer.logprobs = true;
  answer.top_logprobs = 1;
  const json o = ChatCompletionObject(SampleResult(), answer);
  EXPECT_EQ(o["object"], "chat.completion");
  EXPECT_EQ(o["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(o["choices"][0]["message"]["content"], "Hi");
  EXPECT_EQ(o["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(o["usage"]["total_tokens"], 12);
  EXPECT_EQ(o["usage"]["tensor_ops"], 1234);
  EXPECT_DOUBLE_EQ(o["usage"]["energy_joules"].get<double>(), 1.5);
  const json& content = o["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["bytes"], json::array({72}));
  EXPECT_EQ(content[1]["top_logprobs"].size(), 1u);  // top_logprobs 1 of the 2 alternatives
  EXPECT_FALSE(o.contains("qrag"));
  // A token that ends inside a UTF-8 character is still valid JSON text (bytes carry the truth).
  AnswerOptions two = answer;
  two.top_logprobs = 2;
  const std::string text = Dump(ChatCompletionObject(SampleResult(), two));
  EXPECT_THAT(text, HasSubstr("\xEF\xBF\xBD"));
  EXPECT_THAT(text, HasSubstr("[226,130]"));
}

TEST(OpenAiAnswers, ChunksAndCompletions) {
  AnswerOptions answer;
  answer.stream = true;
  answer.include_usage = true;
  Result r = SampleResult();
  r.finish_reason.clear();
  const json first = ChatCompletionChunk(r, answer, true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["usage"].is_null());
  EXPECT_TRUE(first["choices"][0]["logprobs"].is_null());
  r.text.clear();
  r.finish_reason = "length";
  const json last = ChatCompletionChunk(r, answer, false);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  const json usage = UsageChunk(SampleResult(), true);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);

  AnswerOptions lp;
  lp.logprobs = true;
  lp.top_logprobs = 2;
  const json c = CompletionObject(SampleResult(), lp);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "Hi");
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"], json::array({"H", "i"}));
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json::array({0, 1}));
  EXPECT_DOUBLE_EQ(c["choices"][0]["logprobs"]["top_logprobs"][0]["Hello"].get<double>(), -1.5);
}

TEST(OpenAiAnswers, EmbeddingsFloatAndBase64) {
  const std::vector<float> values = {1.0f, -2.0f, 0.5f, 0.25f};
  const json f = EmbeddingsObject("minilm", values, 2, false, 7);
  ASSERT_EQ(f["data"].size(), 2u);
  EXPECT_EQ(f["data"][1]["index"], 1);
  EXPECT_EQ(f["data"][1]["embedding"], json::array({0.5, 0.25}));
  EXPECT_EQ(f["usage"]["prompt_tokens"], 7);
  const json b = EmbeddingsObject("minilm", values, 2, true, 7);
  // 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 (little-endian).
  EXPECT_EQ(b["data"][0]["embedding"], Base64(std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8)));
  EXPECT_EQ(b["data"][0]["embedding"], "AACAPwAAAMA=");
}

TEST(OpenAiBase64, Rfc4648Vectors) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace qrag::api::openai
