// qrag: the command-line client of a qrag server.
//
//   qrag generate --server ADDR --prompt TEXT [--max-tokens N --temperature T --top-p P --top-k K --min-p P
//                 --repetition-penalty R --seed S --stop STR --logprobs N --model NAME --stream
//                 --timeout SECONDS]
//   qrag models   --server ADDR
//   qrag health   --server ADDR [--service NAME] [--wait SECONDS]
//   qrag stats    --server ADDR [--model NAME]
//
// generate prints the completion to stdout followed by a newline (as it arrives with --stream), and
// finish reason, token counts and timings to stderr. Exit status: 0 success, 2 bad usage, 1 an RPC error
// (stderr: "qrag: CODE_NAME: message") or, for health, a server that is not SERVING.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"

namespace qrag::client {
namespace {

constexpr char kUsage[] = R"(usage: qrag COMMAND [options]

commands:
  generate   generate text: prints the completion to stdout, usage and timings to stderr
  models     list the models the server serves
  health     print the server's health (SERVING / NOT_SERVING); exit 0 only when SERVING
  stats      print the engine's state (queue, running, KV-cache blocks)

common options:
  --server HOST:PORT       the server (default $QRAG_SERVER, else 127.0.0.1:50051)
  --timeout SECONDS        deadline of each call (default: none)

generate options:
  --prompt TEXT            the text to continue (required unless --prompt-file)
  --prompt-file PATH       read the prompt from a file
  --model NAME             the model (default: the server's default)
  --max-tokens N           tokens to generate (server default 16)
  --temperature T          0 = greedy (server default 1.0)
  --top-p P                nucleus sampling, (0, 1] (server default 1 = off)
  --top-k K                keep the K most likely tokens (server default 0 = off)
  --min-p P                drop tokens below P x the top probability (server default 0 = off)
  --repetition-penalty R   > 0 (server default 1 = off)
  --seed S                 random seed (default: the server picks one)
  --stop STR               stop before STR (repeatable)
  --logprobs N             print each token's logprob and the N most likely alternatives to stderr
  --stream                 print the text as it is generated

health options:
  --service NAME           check one service (default "": the whole server)
  --wait SECONDS           poll until SERVING or SECONDS pass

stats options:
  --model NAME             the model (default: the server's default)
)";

[[noreturn]] void UsageError(const std::string& msg) {
  std::fprintf(stderr, "qrag: %s\n(run qrag --help for usage)\n", msg.c_str());
  std::exit(2);
}

int RpcError(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

template <typename T>
T ParseNumber(const std::string& flag, const std::string& text) {
  T value{};
  bool ok;
  if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(text, &value);
  } else {
    ok = absl::SimpleAtoi(text, &value);
  }
  if (!ok) UsageError(absl::StrCat(flag, ": '", text, "' is not a valid number"));
  return value;
}

struct Args {
  std::string command;
  std::string server;
  std::optional<double> timeout;  // seconds; none: no deadline
  // generate
  qrag::v1::GenerateRequest request;
  std::string prompt_file;
  bool has_prompt = false;
  bool stream = false;
  // health
  std::string service;
  double wait = 0;
  // stats / generate
  std::string model;
};

bool FlagAllowed(const std::string& command, const std::string& flag) {
  static const std::vector<std::string> kCommon = {"--server", "--timeout"};
  static const std::vector<std::string> kGenerate = {
      "--prompt", "--prompt-file", "--model", "--max-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
      "--repetition-penalty", "--seed", "--stop", "--logprobs", "--stream"};
  auto in = [&](const std::vector<std::string>& v) {
    for (const std::string& f : v) {
      if (f == flag) return true;
    }
    return false;
  };
  if (in(kCommon)) return true;
  if (command == "generate") return in(kGenerate);
  if (command == "health") return flag == "--service" || flag == "--wait";
  if (command == "stats") return flag == "--model";
  return false;
}

Args ParseArgs(int argc, char** argv) {
  if (argc < 2) UsageError("missing COMMAND (generate, models, health, stats)");
  Args a;
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h" || a.command == "help") {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  if (a.command != "generate" && a.command != "models" && a.command != "health" && a.command != "stats") {
    UsageError(absl::StrCat("unknown command '", a.command, "' (generate, models, health, stats)"));
  }
  const char* env_server = std::getenv("QRAG_SERVER");
  a.server = env_server != nullptr && *env_server != '\0' ? env_server : "127.0.0.1:50051";
  qrag::v1::GenerateRequest& r = a.request;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (!FlagAllowed(a.command, flag.substr(0, flag.find('=')))) {
      UsageError(absl::StrCat("unknown option ", flag, " for '", a.command, "'"));
    }
    if (flag == "--stream") {
      a.stream = true;
      continue;
    }
    std::string value;
    if (size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (i + 1 >= argc) UsageError(absl::StrCat(flag, " needs a value"));
      value = argv[++i];
    }
    if (flag == "--server") a.server = value;
    else if (flag == "--timeout") a.timeout = ParseNumber<double>(flag, value);
    else if (flag == "--prompt") { r.set_prompt(value); a.has_prompt = true; }
    else if (flag == "--prompt-file") a.prompt_file = value;
    else if (flag == "--model") a.model = value;
    else if (flag == "--max-tokens") r.set_max_tokens(ParseNumber<int32_t>(flag, value));
    else if (flag == "--temperature") r.set_temperature(static_cast<float>(ParseNumber<double>(flag, value)));
    else if (flag == "--top-p") r.set_top_p(static_cast<float>(ParseNumber<double>(flag, value)));
    else if (flag == "--top-k") r.set_top_k(ParseNumber<int32_t>(flag, value));
    else if (flag == "--min-p") r.set_min_p(static_cast<float>(ParseNumber<double>(flag, value)));
    else if (flag == "--repetition-penalty") r.set_repetition_penalty(static_cast<float>(ParseNumber<double>(flag, value)));
    else if (flag == "--seed") r.set_seed(ParseNumber<uint64_t>(flag, value));
    else if (flag == "--stop") r.add_stop(value);
    else if (flag == "--logprobs") r.set_logprobs(ParseNumber<int32_t>(flag, value));
    else if (flag == "--service") a.service = value;
    else if (flag == "--wait") a.wait = ParseNumber<double>(flag, value);
  }
  if (a.server.empty()) UsageError("--server needs HOST:PORT");
  if (a.timeout.has_value() && !(*a.timeout > 0)) UsageError("--timeout must be > 0 seconds");
  if (a.wait < 0) UsageError("--wait must be >= 0 seconds");
  if (a.command == "generate") {
    if (a.has_prompt && !a.prompt_file.empty()) UsageError("give --prompt or --prompt-file, not both");
    if (!a.prompt_file.empty()) {
      std::ifstream in(a.prompt_file, std::ios::binary);
      if (!in) UsageError(absl::StrCat("cannot read --prompt-file ", a.prompt_file));
      std::stringstream ss;
      ss << in.rdbuf();
      r.set_prompt(ss.str());
    } else if (!a.has_prompt) {
      UsageError("generate needs --prompt TEXT or --prompt-file PATH");
    }
    r.set_model(a.model);
  }
  return a;
}

CallOptions CallOptionsOf(const Args& a) {
  CallOptions call;
  if (a.timeout.has_value()) call.timeout = absl::Seconds(*a.timeout);
  return call;
}

void PrintLogprobs(const google::protobuf::RepeatedPtrField<qrag::v1::TokenLogprob>& logprobs) {
  for (const qrag::v1::TokenLogprob& t : logprobs) {
    std::string line = absl::StrFormat("qrag: token %d %s logprob %.4f", t.token_id(),
                                       absl::CEscape(t.token()), t.logprob());
    for (const qrag::v1::TopLogprob& top : t.top_logprobs()) {
      absl::StrAppendFormat(&line, " | %d %.4f", top.token_id(), top.logprob());
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void PrintSummary(const std::string& model, const std::string& finish_reason, const qrag::v1::Usage& usage,
                  const qrag::v1::Timings& t) {
  std::fprintf(stderr,
               "qrag: model=%s finish=%s prompt_tokens=%d completion_tokens=%d queue=%.3fs "
               "time_to_first_token=%.3fs total=%.3fs\n",
               model.c_str(), finish_reason.c_str(), usage.prompt_tokens(), usage.completion_tokens(),
               t.queue_seconds(), t.time_to_first_token_seconds(), t.total_seconds());
}

int Generate(Client& client, const Args& a) {
  if (!a.stream) {
    absl::StatusOr<qrag::v1::GenerateResponse> r = client.Generate(a.request, CallOptionsOf(a));
    if (!r.ok()) return RpcError(r.status());
    std::fwrite(r->text().data(), 1, r->text().size(), stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    PrintLogprobs(r->logprobs());
    PrintSummary(r->model(), r->finish_reason(), r->usage(), r->timings());
    return 0;
  }
  absl::StatusOr<qrag::v1::GenerateStreamResponse> last = client.GenerateStream(
      a.request,
      [](const qrag::v1::GenerateStreamResponse& m) {
        std::fwrite(m.text().data(), 1, m.text().size(), stdout);
        std::fflush(stdout);
        PrintLogprobs(m.logprobs());
        return true;
      },
      CallOptionsOf(a));
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (!last.ok()) return RpcError(last.status());
  PrintSummary(last->model(), last->finish_reason(), last->usage(), last->timings());
  return 0;
}

int Models(Client& client, const Args& a) {
  absl::StatusOr<std::vector<qrag::v1::ModelInfo>> models = client.ListModels(CallOptionsOf(a));
  if (!models.ok()) return RpcError(models.status());
  for (const qrag::v1::ModelInfo& m : *models) {
    std::printf("%s%s  %s %s, %lld parameters, %d layers, dim %d, vocab %d, context %d, tokenizer %s\n",
                m.name().c_str(), m.is_default() ? " (default)" : "", m.architecture().c_str(),
                m.precision().c_str(), static_cast<long long>(m.parameters()), m.n_layers(), m.dim(),
                m.vocab_size(), m.context_length(), m.tokenizer().c_str());
  }
  return 0;
}

int Health(Client& client, const Args& a) {
  const absl::Time give_up = absl::Now() + absl::Seconds(a.wait);
  while (true) {
    absl::StatusOr<HealthStatus> h = client.Health(a.service, CallOptionsOf(a));
    const bool done = absl::Now() >= give_up;
    if (h.ok() && (*h == HealthStatus::kServing || done)) {
      std::printf("%s\n", HealthStatusName(*h));
      return *h == HealthStatus::kServing ? 0 : 1;
    }
    if (!h.ok() && done) return RpcError(h.status());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int Stats(Client& client, const Args& a) {
  absl::StatusOr<qrag::v1::ServerStats> s = client.ServerStats(a.model, CallOptionsOf(a));
  if (!s.ok()) return RpcError(s.status());
  std::printf(
      "state %s\nmodel %s\nwaiting %d\nrunning %d\nkv_blocks_total %d\nkv_blocks_free %d\nkv_block_size %d\n"
      "iterations %lld\npreemptions %lld\nactive_calls %d\n",
      s->state().c_str(), s->model().c_str(), s->waiting(), s->running(), s->kv_blocks_total(),
      s->kv_blocks_free(), s->kv_block_size(), static_cast<long long>(s->iterations()),
      static_cast<long long>(s->preemptions()), s->active_calls());
  return 0;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  ClientOptions options;
  options.server = args.server;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return RpcError(client.status());
  if (args.command == "generate") return Generate(**client, args);
  if (args.command == "models") return Models(**client, args);
  if (args.command == "health") return Health(**client, args);
  return Stats(**client, args);
}

}  // namespace
}  // namespace qrag::client

int main(int argc, char** argv) { return qrag::client::Main(argc, argv); }
