// qrag: the command-line client of a qrag server.
//
//   qrag generate --server ADDR --prompt TEXT [--max-tokens N --temperature T --top-p P --top-k K --min-p P
//                 --repetition-penalty R --seed S --stop STR --logprobs N --model NAME --stream
//                 --timeout SECONDS]
//   qrag models   --server ADDR
//   qrag health   --server ADDR [--service NAME] [--wait SECONDS]
//   qrag stats    --server ADDR [--model NAME]
//   qrag bench    --server ADDR [--concurrency N] [--requests N] [--prompt-tokens N | --prompt TEXT]
//                 [--max-tokens N] [--seed S] [--temperature T] [--max-duration SECONDS] [--json]
//
// Every command also takes --tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] (TLS,
// mutual TLS) and --token TOKEN (default $QRAG_TOKEN; sent as `authorization: Bearer TOKEN`).
//
// generate prints the completion to stdout followed by a newline (as it arrives with --stream), and
// finish reason, token counts and timings to stderr. Exit status: 0 success, 2 bad usage, 1 an RPC error
// (stderr: "qrag: CODE_NAME: message") or, for health, a server that is not SERVING, or, for bench, any failed
// or unstarted request (the report is printed either way).
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

#include "server/common/cli.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/bench.h"
#include "client/client.h"
#include "client/rag_cli.h"

namespace qrag::client {
namespace {

constexpr char kUsage[] = R"(usage: qrag COMMAND [options]

commands:
  generate   generate text: prints the completion to stdout, usage and timings to stderr
  models     list the models the server serves
  health     print the server's health (SERVING / NOT_SERVING); exit 0 only when SERVING
  stats      print the engine's state (queue, running, KV-cache blocks)
  bench      load generator: N streaming requests, at most C in flight; prints TTFT, TPOT, ITL and E2E
             latency (mean/p50/p90/p99, ms) and request/token throughput, as `vllm bench serve` defines them

common options:
  --server HOST:PORT       the server (default $QRAG_SERVER, else 127.0.0.1:50051)
  --timeout SECONDS        deadline of each call (default: none)
  --tls                    use TLS, trusting the system's CA certificates
  --tls-ca FILE            use TLS; the server's certificate must chain to a CA in this PEM file
  --tls-cert FILE          mutual TLS: this client's PEM certificate (with --tls-key)
  --tls-key FILE           mutual TLS: its PEM private key
  --tls-server-name NAME   the name expected in the server's certificate (default: the host of --server)
  --token TOKEN            bearer token for servers started with --auth-tokens (default $QRAG_TOKEN)

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

bench options (--timeout: each request's deadline, default 300 s):
  --concurrency N          requests in flight at most (default 1, at most 1024)
  --requests N             requests in all (default 16)
  --prompt TEXT            the prompt of every request
  --prompt-tokens N        instead: a synthetic prompt of N words (about N tokens; the report counts the real
                           number) (default: 32)
  --max-tokens N           tokens per completion (default 128)
  --temperature T          (default 1.0); --top-p, --top-k, --min-p, --model as for generate
  --seed S                 request i uses seed S + i (default: the server picks)
  --max-duration SECONDS   start no request after this long (default 600)
  --json                   print the report as JSON
)";

constexpr char kProgram[] = "qrag";

[[noreturn]] void UsageError(const std::string& msg) { cli::UsageError(kProgram, msg); }

template <typename T>
T ParseNumber(const std::string& flag, const std::string& text) {
  return cli::ParseNumber<T>(kProgram, flag, text);
}

int RpcError(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

struct Args {
  std::string command;
  std::string server;
  std::optional<double> timeout;  // seconds; none: no deadline
  // security
  bool tls = false;
  ClientTlsFiles tls_files;
  std::string tls_server_name;
  std::string token;
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
  // RAG commands and generate --rag (client/rag_cli.h)
  RagArgs rag;
  // bench
  int concurrency = 1;
  int requests = 16;
  std::optional<int> prompt_tokens;
  double max_duration = 600;
  bool json = false;
};

bool FlagAllowed(const std::string& command, const std::string& flag) {
  static const std::vector<std::string> kCommon = {"--server",   "--timeout",         "--tls",  "--tls-ca",
                                                   "--tls-cert", "--tls-key", "--tls-server-name", "--token"};
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
  if (RagFlagAllowed(command, flag)) return true;
  if (command == "generate") return in(kGenerate);
  if (command == "health") return flag == "--service" || flag == "--wait";
  if (command == "stats") return flag == "--model";
  if (command == "bench") {
    static const std::vector<std::string> kBench = {
        "--prompt", "--prompt-tokens", "--model", "--max-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
        "--seed", "--concurrency", "--requests", "--max-duration", "--json"};
    return in(kBench);
  }
  return false;
}

Args ParseArgs(int argc, char** argv) {
  if (argc < 2) UsageError("missing COMMAND (generate, models, health, stats, bench)");
  Args a;
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h" || a.command == "help") {
    std::fputs(kUsage, stdout);
    std::fputs(kRagUsage, stdout);
    std::exit(0);
  }
  if (a.command != "generate" && a.command != "models" && a.command != "health" && a.command != "stats" &&
      a.command != "bench" && !IsRagCommand(a.command)) {
    UsageError(absl::StrCat("unknown command '", a.command,
                            "' (generate, models, health, stats, bench, collection, ingest, delete, retrieve)"));
  }
  const char* env_token = std::getenv("QRAG_TOKEN");
  if (env_token != nullptr) a.token = env_token;
  const char* env_server = std::getenv("QRAG_SERVER");
  a.server = env_server != nullptr && *env_server != '\0' ? env_server : "127.0.0.1:50051";
  qrag::v1::GenerateRequest& r = a.request;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(kRagUsage, stdout);
      std::exit(0);
    }
    if (IsRagCommand(a.command) && flag.rfind("--", 0) != 0) {
      a.rag.positional.push_back(flag);
      continue;
    }
    if (RagFlagIsSwitch(flag) && RagFlagAllowed(a.command, flag) && flag != "--json") {
      ParseRagFlag(flag, "", &a.rag);
      continue;
    }
    if (!FlagAllowed(a.command, flag.substr(0, flag.find('=')))) {
      UsageError(absl::StrCat("unknown option ", flag, " for '", a.command, "'"));
    }
    if (flag == "--stream") {
      a.stream = true;
      continue;
    }
    if (flag == "--tls") {
      a.tls = true;
      continue;
    }
    if (flag == "--json") {
      a.json = true;
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
    if (RagFlagAllowed(a.command, flag) && ParseRagFlag(flag, value, &a.rag)) continue;
    if (flag == "--server") a.server = value;
    else if (flag == "--timeout") a.timeout = ParseNumber<double>(flag, value);
    else if (flag == "--tls-ca") { a.tls_files.ca = value; a.tls = true; }
    else if (flag == "--tls-cert") { a.tls_files.cert_chain = value; a.tls = true; }
    else if (flag == "--tls-key") { a.tls_files.private_key = value; a.tls = true; }
    else if (flag == "--tls-server-name") a.tls_server_name = value;
    else if (flag == "--token") a.token = value;
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
    else if (flag == "--concurrency") a.concurrency = ParseNumber<int>(flag, value);
    else if (flag == "--requests") a.requests = ParseNumber<int>(flag, value);
    else if (flag == "--prompt-tokens") a.prompt_tokens = ParseNumber<int>(flag, value);
    else if (flag == "--max-duration") a.max_duration = ParseNumber<double>(flag, value);
  }
  if (a.server.empty()) UsageError("--server needs HOST:PORT");
  if (a.timeout.has_value() && !(*a.timeout > 0)) UsageError("--timeout must be > 0 seconds");
  if (a.tls_files.cert_chain.empty() != a.tls_files.private_key.empty()) {
    UsageError("--tls-cert and --tls-key go together");
  }
  if (!a.tls_server_name.empty() && !a.tls) UsageError("--tls-server-name needs TLS (--tls or --tls-ca)");
  if (a.token.find_first_of(" \t\r\n") != std::string::npos) UsageError("--token must not contain whitespace");
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
    ApplyRagToGenerate(a.rag, &r);
  }
  if (IsRagCommand(a.command)) {
    a.rag.json = a.json;
    ValidateRagArgs(a.command, a.rag);
  }
  if (a.command == "bench") {
    if (a.concurrency < 1 || a.concurrency > 1024) UsageError("--concurrency must be in [1, 1024]");
    if (a.requests < 1 || a.requests > 1000000) UsageError("--requests must be in [1, 1000000]");
    if (!(a.max_duration > 0)) UsageError("--max-duration must be > 0 seconds");
    if (a.has_prompt && a.prompt_tokens.has_value()) UsageError("give --prompt or --prompt-tokens, not both");
    if (!a.has_prompt) {
      const int n = a.prompt_tokens.value_or(32);
      if (n < 1 || n > 1000000) UsageError("--prompt-tokens must be in [1, 1000000]");
      // One short common word per token: most tokenizers map " the" to one token.
      std::string prompt = "The";
      for (int i = 1; i < n; ++i) prompt += " the";
      r.set_prompt(prompt);
    }
    if (!r.has_max_tokens()) r.set_max_tokens(128);
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
               "time_to_first_token=%.3fs total=%.3fs tensor_ops=%lld energy=%.6fJ\n",
               model.c_str(), finish_reason.c_str(), usage.prompt_tokens(), usage.completion_tokens(),
               t.queue_seconds(), t.time_to_first_token_seconds(), t.total_seconds(),
               static_cast<long long>(usage.tensor_ops()), usage.energy_joules());
}

int Generate(Client& client, const Args& a) {
  if (!a.stream) {
    absl::StatusOr<qrag::v1::GenerateResponse> r = client.Generate(a.request, CallOptionsOf(a));
    if (!r.ok()) return RpcError(r.status());
    std::fwrite(r->text().data(), 1, r->text().size(), stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    PrintLogprobs(r->logprobs());
    PrintPassages(r->passages(), r->timings());
    PrintSummary(r->model(), r->finish_reason(), r->usage(), r->timings());
    return 0;
  }
  absl::StatusOr<qrag::v1::GenerateStreamResponse> last = client.GenerateStream(
      a.request,
      [](const qrag::v1::GenerateStreamResponse& m) {
        if (!m.passages().empty()) PrintPassages(m.passages(), qrag::v1::Timings());
        std::fwrite(m.text().data(), 1, m.text().size(), stdout);
        std::fflush(stdout);
        PrintLogprobs(m.logprobs());
        return true;
      },
      CallOptionsOf(a));
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (!last.ok()) return RpcError(last.status());
  if (last->timings().embed_seconds() > 0) PrintPassages({}, last->timings());
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

int Bench(Client& client, const Args& a) {
  BenchOptions options;
  options.concurrency = a.concurrency;
  options.requests = a.requests;
  options.request = a.request;
  options.request_timeout = a.timeout.has_value() ? absl::Seconds(*a.timeout) : absl::Seconds(300);
  options.max_duration = absl::Seconds(a.max_duration);
  absl::StatusOr<BenchReport> report = RunBench(client, options);
  if (!report.ok()) return RpcError(report.status());
  const std::string text = a.json ? BenchReportJson(*report) + "\n" : FormatBenchReport(*report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return report->failed == 0 && report->not_started == 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  ClientOptions options;
  options.server = args.server;
  if (args.tls) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = LoadTlsCredentials(args.tls_files);
    if (!credentials.ok()) {
      std::fprintf(stderr, "qrag: %s\n", std::string(credentials.status().message()).c_str());
      return 2;
    }
    options.credentials = *std::move(credentials);
    options.tls_server_name = args.tls_server_name;
  }
  if (!args.token.empty()) options.metadata.push_back(BearerTokenMetadata(args.token));
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return RpcError(client.status());
  if (IsRagCommand(args.command)) return RunRagCommand(**client, args.command, args.rag, CallOptionsOf(args));
  if (args.command == "generate") return Generate(**client, args);
  if (args.command == "models") return Models(**client, args);
  if (args.command == "health") return Health(**client, args);
  if (args.command == "bench") return Bench(**client, args);
  return Stats(**client, args);
}

}  // namespace
}  // namespace qrag::client

int main(int argc, char** argv) { return qrag::client::Main(argc, argv); }
