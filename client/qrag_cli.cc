// qrag: the command-line client of a qrag server.
//
//   qrag chat     --server ADDR [--message TEXT] [--system TEXT] [--rag C] ...   (client/chat_cli.h)
//   qrag generate --server ADDR --prompt TEXT [--max-tokens N --temperature T --top-p P --top-k K --min-p P
//                 --repetition-penalty R --seed S --stop STR --logprobs N --model NAME --stream
//                 --timeout SECONDS]
//   qrag models   --server ADDR
//   qrag health   --server ADDR [--service NAME] [--wait SECONDS]
//   qrag stats    --server ADDR [--model NAME]
//   qrag bench    --server ADDR [--concurrency N] [--requests N] [--prompt-tokens N | --prompt TEXT]
//                 [--max-tokens N] [--seed S] [--temperature T] [--max-duration SECONDS] [--json]
//
// and the RAG commands of rag_cli.h (collection, ingest, delete, retrieve); `qrag COMMAND --help` lists a
// command's flags (server/common/cli.h). Every command also takes --tls-ca FILE [--tls-cert FILE --tls-key FILE]
// [--tls-server-name NAME] (TLS, mutual TLS) and --token TOKEN (default $QRAG_TOKEN; sent as
// `authorization: Bearer TOKEN`).
//
// generate prints the completion to stdout followed by a newline (as it arrives with --stream), and
// finish reason, token counts and timings to stderr. Exit status: 0 success, 2 bad usage, 1 an RPC error
// (stderr: "qrag: CODE_NAME: message") or, for health, a server that is not SERVING, or, for bench, any failed
// or unstarted request (the report is printed either way).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/bench.h"
#include "client/chat_cli.h"
#include "client/client.h"
#include "client/rag_cli.h"
#include "server/common/cli.h"
#include "server/common/status.h"

namespace qrag::client {
namespace {

constexpr char kProgram[] = "qrag";

int RpcError(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

// The flags of every command: the server and how to reach it.
struct ConnectionFlags {
  std::string server = "127.0.0.1:50051";  // $QRAG_SERVER when set and not empty
  std::optional<double> timeout;           // seconds; none: no deadline
  bool tls = false;                        // also set by --tls-ca, --tls-cert and --tls-key
  ClientTlsFiles tls_files;
  std::string tls_server_name;
  std::string token;  // $QRAG_TOKEN when set
};

// The request flags generate and bench share.
struct RequestFlags {
  std::optional<std::string> prompt;  // "" is a prompt
  std::string model;                  // empty: the server's default
  std::optional<int32_t> max_tokens;
  std::optional<double> temperature, top_p;
  int32_t top_k = 0;
  double min_p = 0;
  std::optional<uint64_t> seed;
};

struct Args {
  ConnectionFlags connection;
  RequestFlags request;  // generate, bench
  // generate
  std::string prompt_file;
  std::optional<double> repetition_penalty;
  std::vector<std::string> stop;
  int32_t logprobs = 0;
  bool stream = false;
  // health
  std::string service;
  double wait = 0;
  // stats
  std::string stats_model;
  // RAG commands and generate --rag (client/rag_cli.h)
  RagArgs rag;
  // chat (client/chat_cli.h)
  ChatArgs chat;
  // bench
  int concurrency = 1;
  int requests = 16;
  std::optional<int> prompt_tokens;
  double max_duration = 600;
  bool json = false;
};

void AddConnectionFlags(CLI::App& command, ConnectionFlags* f) {
  command.option_defaults()->group("Connection");
  command.add_option("--server", f->server, "the server")->type_name("HOST:PORT")->envname("QRAG_SERVER");
  cli::AddNumber(command, "--timeout", &f->timeout, "deadline of each call (default: none)")->type_name("SECONDS");
  command.add_flag("--tls", f->tls, "use TLS, trusting the system's CA certificates");
  const auto use_tls = [f](const std::string&) { f->tls = true; };
  command
      .add_option("--tls-ca", f->tls_files.ca, "use TLS; the server's certificate must chain to a CA in this PEM file")
      ->type_name("FILE")
      ->each(use_tls);
  command
      .add_option("--tls-cert", f->tls_files.cert_chain, "mutual TLS: this client's PEM certificate (with --tls-key)")
      ->type_name("FILE")
      ->each(use_tls);
  command.add_option("--tls-key", f->tls_files.private_key, "mutual TLS: its PEM private key")
      ->type_name("FILE")
      ->each(use_tls);
  command.add_option("--tls-server-name", f->tls_server_name,
                     "the name expected in the server's certificate (default: the host of --server)")
      ->type_name("NAME");
  command.add_option("--token", f->token, "bearer token for servers started with --auth-tokens")
      ->type_name("TOKEN")
      ->envname("QRAG_TOKEN");
  command.option_defaults()->group("Options");
}

absl::Status ValidateConnectionFlags(const ConnectionFlags& f) {
  if (f.server.empty()) return Usage("--server needs HOST:PORT");
  if (f.timeout.has_value() && !(*f.timeout > 0)) return Usage("--timeout must be > 0 seconds");
  if (f.tls_files.cert_chain.empty() != f.tls_files.private_key.empty()) {
    return Usage("--tls-cert and --tls-key go together");
  }
  if (!f.tls_server_name.empty() && !f.tls) return Usage("--tls-server-name needs TLS (--tls or --tls-ca)");
  if (f.token.find_first_of(" \t\r\n") != std::string::npos) return Usage("--token must not contain whitespace");
  return absl::OkStatus();
}

// generate's and bench's sampling flags (--prompt and --max-tokens are each command's own: they differ).
void AddRequestFlags(CLI::App& command, RequestFlags* f) {
  command.add_option("--model", f->model, "the model (default: the server's default)")->type_name("NAME");
  cli::AddNumber(command, "--temperature", &f->temperature, "0 = greedy (server default 1.0)");
  cli::AddNumber(command, "--top-p", &f->top_p, "nucleus sampling, (0, 1] (server default 1 = off)");
  cli::AddNumber(command, "--top-k", &f->top_k, "keep the K most likely tokens (0 = off)");
  cli::AddNumber(command, "--min-p", &f->min_p, "drop tokens below P x the top probability (0 = off)");
}

qrag::v1::GenerateRequest RequestOf(const RequestFlags& f) {
  qrag::v1::GenerateRequest r;
  r.set_model(f.model);
  if (f.prompt.has_value()) r.set_prompt(*f.prompt);
  if (f.max_tokens.has_value()) r.set_max_tokens(*f.max_tokens);
  if (f.temperature.has_value()) r.set_temperature(static_cast<float>(*f.temperature));
  if (f.top_p.has_value()) r.set_top_p(static_cast<float>(*f.top_p));
  r.set_top_k(f.top_k);
  r.set_min_p(static_cast<float>(f.min_p));
  if (f.seed.has_value()) r.set_seed(*f.seed);
  return r;
}

// The commands, each with its flags into *a and the connection flags.
void AddCommands(CLI::App& app, Args* a) {
  CLI::App* generate =
      app.add_subcommand("generate", "generate text: prints the completion to stdout, usage and timings to stderr");
  cli::AddOptionalText(*generate, "--prompt", &a->request.prompt,
                       "the text to continue (required unless --prompt-file)");
  AddRequestFlags(*generate, &a->request);
  generate->add_option("--prompt-file", a->prompt_file, "read the prompt from a file (instead of --prompt)")
      ->type_name("PATH");
  cli::AddNumber(*generate, "--max-tokens", &a->request.max_tokens, "tokens to generate (server default 16)");
  cli::AddNumber(*generate, "--repetition-penalty", &a->repetition_penalty, "> 0 (server default 1 = off)");
  cli::AddNumber(*generate, "--seed", &a->request.seed, "random seed (default: the server picks one)");
  cli::AddRepeated(*generate, "--stop", &a->stop, "stop before this text (repeatable)");
  cli::AddNumber(*generate, "--logprobs", &a->logprobs,
                 "print each token's logprob and the N most likely alternatives to stderr");
  generate->add_flag("--stream", a->stream, "print the text as it is generated");
  AddGenerateRagFlags(*generate, &a->rag);

  CLI::App* models = app.add_subcommand("models", "list the models the server serves");

  CLI::App* health =
      app.add_subcommand("health", "print the server's health (SERVING / NOT_SERVING); exit 0 only when SERVING");
  health->add_option("--service", a->service, "check one service (default \"\": the whole server)")
      ->type_name("NAME");
  cli::AddNumber(*health, "--wait", &a->wait, "poll until SERVING or SECONDS pass")->type_name("SECONDS");

  CLI::App* stats = app.add_subcommand("stats", "print the engine's state (queue, running, KV-cache blocks)");
  stats->add_option("--model", a->stats_model, "the model (default: the server's default)")->type_name("NAME");

  CLI::App* bench = app.add_subcommand(
      "bench", "load generator: N streaming requests, at most C in flight; prints TTFT, TPOT, ITL and E2E latency "
               "(mean/p50/p90/p99, ms) and request/token throughput, as `vllm bench serve` defines them "
               "(--timeout: each request's deadline, default 300 s)");
  cli::AddOptionalText(*bench, "--prompt", &a->request.prompt, "the prompt of every request");
  AddRequestFlags(*bench, &a->request);
  cli::AddNumber(*bench, "--prompt-tokens", &a->prompt_tokens,
                 "instead of --prompt: a synthetic prompt of N words (about N tokens; the report counts the real "
                 "number) (default: 32)");
  cli::AddNumber(*bench, "--max-tokens", &a->request.max_tokens, "tokens per completion (default 128)");
  cli::AddNumber(*bench, "--seed", &a->request.seed, "request i uses seed S + i (default: the server picks)");
  cli::AddNumber(*bench, "--concurrency", &a->concurrency, "requests in flight at most, 1..1024");
  cli::AddNumber(*bench, "--requests", &a->requests, "requests in all");
  cli::AddNumber(*bench, "--max-duration", &a->max_duration, "start no request after this long")
      ->type_name("SECONDS");
  bench->add_flag("--json", a->json, "print the report as JSON");

  CLI::App* chat = AddChatCommand(app, &a->chat, &a->rag);

  std::vector<CLI::App*> commands = {chat, generate, models, health, stats, bench};
  for (CLI::App* rag : AddRagCommands(app, &a->rag)) commands.push_back(rag);
  for (CLI::App* command : commands) AddConnectionFlags(*command, &a->connection);
}

// Checks the flags of `command`; settles generate's and bench's prompt.
absl::Status ValidateArgs(const std::string& command, Args* a) {
  QRAG_RETURN_IF_ERROR(ValidateConnectionFlags(a->connection));
  if (a->wait < 0) return Usage("--wait must be >= 0 seconds");
  RequestFlags& r = a->request;
  if (command == "generate") {
    if (r.prompt.has_value() && !a->prompt_file.empty()) return Usage("give --prompt or --prompt-file, not both");
    if (!a->prompt_file.empty()) {
      std::ifstream in(a->prompt_file, std::ios::binary);
      if (!in) return Usage(absl::StrCat("cannot read --prompt-file ", a->prompt_file));
      std::stringstream ss;
      ss << in.rdbuf();
      r.prompt = ss.str();
    } else if (!r.prompt.has_value()) {
      return Usage("generate needs --prompt TEXT or --prompt-file PATH");
    }
  }
  if (IsRagCommand(command)) QRAG_RETURN_IF_ERROR(ValidateRagArgs(command, a->rag));
  if (command == "chat") QRAG_RETURN_IF_ERROR(ValidateChatArgs(a->chat));
  if (command == "bench") {
    if (a->concurrency < 1 || a->concurrency > 1024) return Usage("--concurrency must be in [1, 1024]");
    if (a->requests < 1 || a->requests > 1000000) return Usage("--requests must be in [1, 1000000]");
    if (!(a->max_duration > 0)) return Usage("--max-duration must be > 0 seconds");
    if (r.prompt.has_value() && a->prompt_tokens.has_value()) {
      return Usage("give --prompt or --prompt-tokens, not both");
    }
    if (!r.prompt.has_value()) {
      const int n = a->prompt_tokens.value_or(32);
      if (n < 1 || n > 1000000) return Usage("--prompt-tokens must be in [1, 1000000]");
      // One short common word per token: most tokenizers map " the" to one token.
      std::string prompt = "The";
      for (int i = 1; i < n; ++i) prompt += " the";
      r.prompt = prompt;
    }
    if (!r.max_tokens.has_value()) r.max_tokens = 128;
  }
  return absl::OkStatus();
}

CallOptions CallOptionsOf(const Args& a) {
  CallOptions call;
  if (a.connection.timeout.has_value()) call.timeout = absl::Seconds(*a.connection.timeout);
  return call;
}

// generate's request: the shared flags, generate's own and --rag.
qrag::v1::GenerateRequest GenerateRequestOf(const Args& a) {
  qrag::v1::GenerateRequest r = RequestOf(a.request);
  if (a.repetition_penalty.has_value()) r.set_repetition_penalty(static_cast<float>(*a.repetition_penalty));
  for (const std::string& stop : a.stop) r.add_stop(stop);
  r.set_logprobs(a.logprobs);
  ApplyRagToGenerate(a.rag, &r);
  return r;
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
  const qrag::v1::GenerateRequest request = GenerateRequestOf(a);
  if (!a.stream) {
    absl::StatusOr<qrag::v1::GenerateResponse> r = client.Generate(request, CallOptionsOf(a));
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
      request,
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
    std::printf("%s%s  %s %s, %lld parameters, %d layers, dim %d, vocab %d, context %d, tokenizer %s, %s\n",
                m.name().c_str(), m.is_default() ? " (default)" : "", m.architecture().c_str(),
                m.precision().c_str(), static_cast<long long>(m.parameters()), m.n_layers(), m.dim(),
                m.vocab_size(), m.context_length(), m.tokenizer().c_str(),
                m.chat_template().empty() ? "no chat template"
                                          : absl::StrCat("chat template from ", m.chat_template()).c_str());
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
  absl::StatusOr<qrag::v1::ServerStats> s = client.ServerStats(a.stats_model, CallOptionsOf(a));
  if (!s.ok()) return RpcError(s.status());
  std::printf(
      "state %s\nmodel %s\nwaiting %d\nrunning %d\nkv_blocks_total %d\nkv_blocks_free %d\nkv_block_size %d\n"
      "iterations %lld\npreemptions %lld\nactive_calls %d\nkv_blocks_cached %d\n",
      s->state().c_str(), s->model().c_str(), s->waiting(), s->running(), s->kv_blocks_total(),
      s->kv_blocks_free(), s->kv_block_size(), static_cast<long long>(s->iterations()),
      static_cast<long long>(s->preemptions()), s->active_calls(), s->kv_blocks_cached());
  return 0;
}

int Bench(Client& client, const Args& a) {
  BenchOptions options;
  options.concurrency = a.concurrency;
  options.requests = a.requests;
  options.request = RequestOf(a.request);
  options.request_timeout =
      a.connection.timeout.has_value() ? absl::Seconds(*a.connection.timeout) : absl::Seconds(300);
  options.max_duration = absl::Seconds(a.max_duration);
  absl::StatusOr<BenchReport> report = RunBench(client, options);
  if (!report.ok()) return RpcError(report.status());
  const std::string text = a.json ? BenchReportJson(*report) + "\n" : FormatBenchReport(*report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return report->failed == 0 && report->not_started == 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  std::unique_ptr<CLI::App> app = cli::NewApp(kProgram, "The command-line client of a qrag server.");
  app->footer("Run qrag COMMAND --help for the options of a command. Exit status: 0 success, 2 bad usage, 1 an RPC "
              "error (\"qrag: CODE: message\" on stderr), for health a server that is not SERVING, for bench a "
              "failed or unstarted request.");
  Args args;
  AddCommands(*app, &args);
  std::string command;
  cli::ParseFlagsOrExit(*app, argc, argv, [&] {
    command = app->get_subcommands().front()->get_name();
    return ValidateArgs(command, &args);
  });

  const ConnectionFlags& connection = args.connection;
  ClientOptions options;
  options.server = connection.server;
  if (connection.tls) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = LoadTlsCredentials(connection.tls_files);
    if (!credentials.ok()) {
      std::fprintf(stderr, "qrag: %s\n", std::string(credentials.status().message()).c_str());
      return 2;
    }
    options.credentials = *std::move(credentials);
    options.tls_server_name = connection.tls_server_name;
  }
  if (!connection.token.empty()) options.metadata.push_back(BearerTokenMetadata(connection.token));
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return RpcError(client.status());
  if (IsRagCommand(command)) return RunRagCommand(**client, command, args.rag, CallOptionsOf(args));
  if (command == "chat") return RunChat(**client, args.chat, args.rag, CallOptionsOf(args));
  if (command == "generate") return Generate(**client, args);
  if (command == "models") return Models(**client, args);
  if (command == "health") return Health(**client, args);
  if (command == "bench") return Bench(**client, args);
  return Stats(**client, args);
}

}  // namespace
}  // namespace qrag::client

int main(int argc, char** argv) { return qrag::client::Main(argc, argv); }
