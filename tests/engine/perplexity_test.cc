// engine::ComputePerplexity and `qrag-run --perplexity` on the real stories260K checkpoint: against the NLL
// of llama2.c's own fp32 logits, against windows scored token by token through the scoring API with this
// test's own log-softmax, and the error cases.
#include "server/engine/perplexity.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/model/stories_fixture.h"

namespace qrag::engine {
namespace {

using ::qrag::testing::ReadFile;
using ::qrag::testing::ReadFloats;
using ::qrag::testing::ReadIds;
using ::testing::HasSubstr;

// -log softmax(row)[target], written out here in long double independently of engine::TokenNll.
double IndependentNll(const float* row, int vocab, int target) {
  long double max = row[0];
  for (int i = 1; i < vocab; ++i) max = std::max<long double>(max, row[i]);
  long double z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(static_cast<long double>(row[i]) - max);
  return static_cast<double>(max + std::log(z) - row[target]);
}

// The mean NLL of the definition in perplexity.h, each window scored token by token (chunk 1, the decode
// shape) through ScoreSequence, summed here.
double TokenByTokenMeanNll(model::Transformer& t, const std::vector<int32_t>& tokens, int window) {
  const int vocab = t.config().vocab_size;
  double sum = 0;
  int64_t count = 0;
  for (size_t w = 0; (w + 1) * window <= tokens.size(); ++w) {
    const std::vector<int32_t> win(tokens.begin() + w * window, tokens.begin() + (w + 1) * window);
    auto logits = ScoreSequence(t, win, ScoreOptions{.chunk = 1, .block_size = 16});
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return NAN;
    for (int i = 0; i + 1 < window; ++i) {
      sum += IndependentNll(logits->data() + static_cast<size_t>(i) * vocab, vocab, win[i + 1]);
      ++count;
    }
  }
  return sum / static_cast<double>(count);
}

class Stories260KPerplexity : public ::testing::Test {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_SHARED_PATH(model_path, "models/stories260K/stories260K.bin");
    QRAG_REQUIRE_SHARED_PATH(tok_path, "models/stories260K/tok512.bin");
    QRAG_REQUIRE_SHARED_PATH(expected, "models/stories260K/expected");
    model_path_ = model_path;
    expected_ = expected;
    ::qrag::testing::LoadStories260K(model_path, tok_path, &model_, &tokenizer_);
    if (HasFatalFailure()) return;
    auto t = model::Transformer::Create(*model_, &cpu_, model::TransformerOptions{});
    ASSERT_TRUE(t.ok()) << t.status();
    transformer_ = std::move(*t);
  }

  backend::CpuBackend cpu_{backend::CpuBackendOptions{}};
  std::string model_path_, expected_;
  std::unique_ptr<model::LoadedModel> model_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<model::Transformer> transformer_;
};

// One window over llama2.c's whole greedy sequence (BOS + 200 tokens): the NLL of llama2.c's own logits.
TEST_F(Stories260KPerplexity, OneWindowEqualsLlama2cLogits) {
  const std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  ASSERT_EQ(seq.size(), 201u);
  const std::vector<float> gold = ReadFloats(expected_ + "/greedy_t0.0_n200.logits.f32");
  ASSERT_EQ(gold.size(), 200u * 512);
  double sum = 0;
  for (int i = 0; i < 200; ++i) sum += IndependentNll(gold.data() + i * 512, 512, seq[i + 1]);
  const double gold_mean = sum / 200;

  PerplexityOptions o;
  o.window = 201;
  auto r = ComputePerplexity(*transformer_, seq, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->windows, 1);
  EXPECT_EQ(r->tokens_scored, 200);
  EXPECT_EQ(r->tokens_dropped, 0);
  EXPECT_NEAR(r->mean_nll, gold_mean, 1e-5);
  EXPECT_NEAR(r->perplexity, std::exp(gold_mean), 1e-5 * std::exp(gold_mean));
  EXPECT_GT(r->mean_nll, 0.01);  // greedy text is likely, but not certain
}

// Windows of 64 over 201 tokens: three windows, each from position 0, the 9 final tokens dropped.
TEST_F(Stories260KPerplexity, WindowsStartFreshAndPartialWindowIsDropped) {
  const std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  PerplexityOptions o;
  o.window = 64;
  o.score.chunk = 24;  // windows split over several forward steps
  auto r = ComputePerplexity(*transformer_, seq, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->windows, 3);
  EXPECT_EQ(r->tokens_scored, 3 * 63);
  EXPECT_EQ(r->tokens_dropped, 9);
  const double expected = TokenByTokenMeanNll(*transformer_, seq, 64);
  EXPECT_NEAR(r->mean_nll, expected, 1e-5 * expected);
  EXPECT_DOUBLE_EQ(r->sum_nll / r->tokens_scored, r->mean_nll);
  // Not the same as one long window: later windows lose their context.
  o.window = 192;
  auto one = ComputePerplexity(*transformer_, seq, o);
  ASSERT_TRUE(one.ok());
  EXPECT_NE(one->mean_nll, r->mean_nll);
}

TEST_F(Stories260KPerplexity, Errors) {
  const std::vector<int32_t> seq = ReadIds(expected_ + "/greedy_t0.0_n200.tokens.txt", 0);
  PerplexityOptions o;
  o.window = 2;
  EXPECT_THAT(ComputePerplexity(*transformer_, absl::MakeConstSpan(seq.data(), 1), o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 2 tokens")));
  o.window = 1;
  EXPECT_THAT(ComputePerplexity(*transformer_, seq, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside [2, 512]")));
  o.window = 513;
  EXPECT_THAT(ComputePerplexity(*transformer_, seq, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside [2, 512]")));
  o.window = 202;
  EXPECT_THAT(ComputePerplexity(*transformer_, seq, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("201 tokens, fewer than one window of 202")));
}

TEST(TokenNll, MatchesLogSoftmax) {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f, 1000.0f};
  EXPECT_NEAR(TokenNll(row, 3), IndependentNll(row.data(), 4, 3), 1e-12);
  EXPECT_NEAR(TokenNll(row, 0), 999.0, 1e-9);  // no overflow from exp(1000)
  const std::vector<float> flat(8, 0.5f);
  EXPECT_NEAR(TokenNll(flat, 5), std::log(8.0), 1e-12);
}

// ---- qrag-run --perplexity ------------------------------------------------------------------------

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout, or stdout + stderr
};

RunResult RunQragRun(const std::string& args, bool with_stderr) {
  const std::string cmd = absl::StrCat(QRAG_RUN_BINARY, " ", args, with_stderr ? " 2>&1" : " 2>/dev/null");
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The CLI tokenizes the file without BOS and prints the perplexity of the definition, to 4 decimals.
TEST_F(Stories260KPerplexity, QragRunPrintsPerplexityOfTheFile) {
  const std::string text_path = expected_ + "/greedy_t0.0_n200.txt";
  auto tokens = tokenizer_->Encode(ReadFile(text_path), model::EncodeOptions{.add_bos = false});
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_GT(tokens->size(), 150u);
  ASSERT_NE((*tokens)[0], 1);  // no BOS
  const int window = 50;
  const int windows = static_cast<int>(tokens->size()) / window;
  const double mean = TokenByTokenMeanNll(*transformer_, *tokens, window);

  const RunResult run = RunQragRun(
      absl::StrCat("--model '", model_path_, "' --perplexity '", text_path, "' --ctx ", window), false);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  double ppl = 0, nll = 0;
  long long scored = 0;
  ASSERT_EQ(std::sscanf(run.output.c_str(), "perplexity: %lf over %lld tokens\nmean nll: %lf nats", &ppl, &scored,
                        &nll),
            3)
      << run.output;
  EXPECT_EQ(scored, windows * (window - 1));
  EXPECT_NEAR(nll, mean, 2e-6);
  EXPECT_NEAR(ppl, std::exp(mean), 1e-4);
}

TEST_F(Stories260KPerplexity, QragRunErrorsExitOne) {
  ::qrag::testing::TempDir dir;
  ::qrag::testing::WriteFile(dir.Join("latin1.txt"), "caf\xe9 au lait");
  ::qrag::testing::WriteFile(dir.Join("short.txt"), "a");
  const std::string text = expected_ + "/greedy_t0.0_n200.txt";
  const std::string model = absl::StrCat("--model '", model_path_, "' ");
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {absl::StrCat("--perplexity '", dir.Join("missing.txt"), "'"), "missing.txt"},
      {absl::StrCat("--perplexity '", dir.Join("latin1.txt"), "'"), "invalid UTF-8 at byte 3"},
      {absl::StrCat("--perplexity '", dir.Join("short.txt"), "' --ctx 2"), "at least 2 tokens"},
      {absl::StrCat("--perplexity '", text, "' --ctx 1"), "outside [2, 512]"},
      {absl::StrCat("--perplexity '", text, "' --ctx 513"), "outside [2, 512]"},
      {absl::StrCat("--perplexity '", text, "' --ctx 500"), "fewer than one window of 500"},
  };
  for (const Case& c : cases) {
    const RunResult run = RunQragRun(model + c.args, true);
    EXPECT_EQ(run.exit_code, 1) << c.args << ": " << run.output;
    EXPECT_THAT(run.output, HasSubstr("qrag-run: error:")) << c.args;
    EXPECT_THAT(run.output, HasSubstr(c.message)) << c.args;
  }
  // Usage errors (exit 2): --ctx without --perplexity, --perplexity with a prompt.
  for (const std::string& args : {std::string("--ctx 64 --max-tokens 4"),
                                  absl::StrCat("--perplexity '", text, "' --prompt hi")}) {
    const RunResult run = RunQragRun(model + args, true);
    EXPECT_EQ(run.exit_code, 2) << args << ": " << run.output;
    EXPECT_THAT(run.output, HasSubstr("--perplexity")) << args;
  }
}

}  // namespace
}  // namespace qrag::engine
