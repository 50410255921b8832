// The C++ client library against the real qrag-server binary (spawned per test on 127.0.0.1:0) with the real
// stories260K model: generate, stream, models, health, stats, errors, cancellation. The texts are checked against
// llama2.c's gold output and qrag-run, as the Python client's are (tests/integration/serving_test.py).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace qrag::client {
namespace {

using ::testing::HasSubstr;

constexpr char kPrompt[] = "Lily and Ben went to the park. They saw a big red ball.";

// A child process whose stderr is read by a thread; the server's address comes from its "listening on" line.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, STDOUT_FILENO);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) {
        absl::MutexLock lock(&mu_);
        log_.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    });
  }

  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }

  // "127.0.0.1:PORT" once the server printed it, or "" after `timeout`.
  std::string WaitForAddress(absl::Duration timeout) {
    const std::string marker = "listening on ";
    absl::MutexLock lock(&mu_);
    auto ready = [&] {
      size_t at = log_.find(marker);
      return at != std::string::npos && log_.find('\n', at) != std::string::npos;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return "";
    size_t at = log_.find(marker) + marker.size();
    return log_.substr(at, log_.find('\n', at) - at);
  }

  // Sends `sig` and returns the exit status (-1 when it did not exit normally within `timeout`).
  int StopWith(int sig, absl::Duration timeout) {
    kill(pid_, sig);
    const absl::Time give_up = absl::Now() + timeout;
    int status = 0;
    while (absl::Now() < give_up) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  std::string log() {
    absl::MutexLock lock(&mu_);
    return log_;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::thread reader_;
  absl::Mutex mu_;
  std::string log_ ABSL_GUARDED_BY(mu_);
};

std::string RunQragRun(const std::string& model, const std::string& args) {
  const std::string cmd = std::string(QRAG_RUN_BINARY) + " --model '" + model + "' " + args + " 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class ClientServerTest : public ::testing::Test {
 protected:
  void Start(const std::string& model) {
    model_ = model;
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{QRAG_SERVER_BINARY, "--model", model, "--listen", "127.0.0.1:0"});
    address_ = server_->WaitForAddress(absl::Seconds(60));
    ASSERT_FALSE(address_.empty()) << server_->log();
    ClientOptions options;
    options.server = address_;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::StatusOr<HealthStatus> health;
    do {
      health = client_->Health();
      if (health.ok() && *health == HealthStatus::kServing) break;
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < give_up);
    ASSERT_TRUE(health.ok() && *health == HealthStatus::kServing) << server_->log();
  }

  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->StopWith(SIGTERM, absl::Seconds(60)), 0) << server_->log();
    }
  }

  static qrag::v1::GenerateRequest Greedy107() {
    qrag::v1::GenerateRequest r;
    r.set_prompt(kPrompt);
    r.set_temperature(0);
    r.set_max_tokens(107);
    return r;
  }

  std::string model_, address_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientServerTest, GenerateGreedyEqualsGoldAndQragRun) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  QRAG_REQUIRE_SHARED_PATH(gold_path, "models/stories260K/expected/prompted_greedy_n128.stdout.txt");
  Start(model);
  absl::StatusOr<qrag::v1::GenerateResponse> r = client_->Generate(Greedy107(), {.timeout = absl::Seconds(60)});
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string gold = testing::ReadFile(gold_path);
  ASSERT_EQ(gold.rfind(kPrompt, 0), 0u);
  EXPECT_EQ(r->text(), gold.substr(sizeof(kPrompt) - 1, gold.size() - (sizeof(kPrompt) - 1) - 1));
  EXPECT_EQ(r->text(), RunQragRun(model, std::string("--prompt '") + kPrompt + "' --temperature 0 --max-tokens 107"));
  EXPECT_EQ(r->finish_reason(), "length");
  EXPECT_EQ(r->usage().prompt_tokens(), 22);
  EXPECT_EQ(r->usage().completion_tokens(), 107);
  EXPECT_EQ(r->model(), "stories260K");
}

TEST_F(ClientServerTest, SeededSamplingEqualsQragRun) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  qrag::v1::GenerateRequest req;
  req.set_prompt("Once upon a time");
  req.set_temperature(1.0f);
  req.set_top_p(0.9f);
  req.set_seed(133742);
  req.set_max_tokens(256);
  absl::StatusOr<qrag::v1::GenerateResponse> r = client_->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text(), RunQragRun(model, "--prompt 'Once upon a time' --temperature 1.0 --top-p 0.9 --seed 133742 "
                                         "--max-tokens 256"));
}

TEST_F(ClientServerTest, StreamConcatenatesToUnaryText) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  absl::StatusOr<qrag::v1::GenerateResponse> unary = client_->Generate(Greedy107());
  ASSERT_TRUE(unary.ok()) << unary.status();
  std::string text;
  int messages = 0;
  absl::StatusOr<qrag::v1::GenerateStreamResponse> last = client_->GenerateStream(
      Greedy107(), [&](const qrag::v1::GenerateStreamResponse& m) {
        text += m.text();
        ++messages;
        return true;
      });
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_GE(messages, 1);
  EXPECT_EQ(text, unary->text());
  EXPECT_EQ(last->finish_reason(), "length");
  EXPECT_EQ(last->usage().completion_tokens(), 107);
  EXPECT_GT(last->timings().total_seconds(), 0);
}

TEST_F(ClientServerTest, ModelsHealthAndStats) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  absl::StatusOr<std::vector<qrag::v1::ModelInfo>> models = client_->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].name(), "stories260K");
  EXPECT_EQ((*models)[0].context_length(), 512);
  EXPECT_THAT(client_->GetModelInfo("nope"), ::StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_EQ(*client_->Health(), HealthStatus::kServing);
  EXPECT_EQ(*client_->Health("qrag.v1.Inference"), HealthStatus::kServing);
  EXPECT_EQ(*client_->Health("no.such.Service"), HealthStatus::kServiceUnknown);
  absl::StatusOr<qrag::v1::ServerStats> stats = client_->ServerStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->state(), "serving");
  EXPECT_EQ(stats->kv_blocks_free(), stats->kv_blocks_total());
}

TEST_F(ClientServerTest, ErrorsCarryCodeAndMessageAndServerKeepsServing) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  qrag::v1::GenerateRequest bad = Greedy107();
  bad.set_top_p(1.5f);
  EXPECT_THAT(client_->Generate(bad), ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  EXPECT_THAT(client_->GenerateStream(bad, nullptr),
              ::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  qrag::v1::GenerateRequest unknown = Greedy107();
  unknown.set_model("nope");
  EXPECT_THAT(client_->Generate(unknown), ::StatusIsCode(absl::StatusCode::kNotFound));
  qrag::v1::GenerateRequest long_prompt = Greedy107();
  std::string p;
  for (int i = 0; i < 200; ++i) p += "Lily saw a big ball. ";
  long_prompt.set_prompt(p);
  EXPECT_THAT(client_->Generate(long_prompt), ::StatusIsCode(absl::StatusCode::kOutOfRange));
  EXPECT_TRUE(client_->Generate(Greedy107()).ok());
}

TEST_F(ClientServerTest, CancelFromCallbackEndsTheCallAndFreesKvBlocks) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  qrag::v1::GenerateRequest req = Greedy107();
  req.set_max_tokens(480);
  int messages = 0;
  absl::StatusOr<qrag::v1::GenerateStreamResponse> r =
      client_->GenerateStream(req, [&](const qrag::v1::GenerateStreamResponse&) { return ++messages < 1; });
  EXPECT_THAT(r, ::StatusIsCode(absl::StatusCode::kCancelled));
  EXPECT_EQ(messages, 1);
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  absl::StatusOr<qrag::v1::ServerStats> stats;
  do {
    stats = client_->ServerStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->running() == 0 && stats->kv_blocks_free() == stats->kv_blocks_total()) break;
    absl::SleepFor(absl::Milliseconds(20));
  } while (absl::Now() < give_up);
  EXPECT_EQ(stats->kv_blocks_free(), stats->kv_blocks_total());
  EXPECT_TRUE(client_->Generate(Greedy107()).ok());
}

TEST_F(ClientServerTest, DeadlineOnTheClientSide) {
  QRAG_REQUIRE_SHARED_PATH(model, "models/stories260K/stories260K.bin");
  Start(model);
  EXPECT_THAT(client_->Generate(Greedy107(), {.timeout = absl::Nanoseconds(1)}),
              ::StatusIsCode(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(client_->Generate(Greedy107()).ok());
}

TEST(ClientTest, EmptyServerIsInvalidArgumentAndUnreachableIsUnavailable) {
  EXPECT_THAT(Client::Create(ClientOptions{}), ::StatusIsCode(absl::StatusCode::kInvalidArgument));
  ClientOptions options;
  options.server = "127.0.0.1:1";
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_TRUE(client.ok());
  EXPECT_THAT((*client)->Health("", {.timeout = absl::Seconds(5)}),
              ::StatusIsCode(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace qrag::client
