// qrag-server: serves a model over gRPC (qrag.v1.Inference, qrag.v1.Admin, grpc.health.v1, reflection).
//
//   qrag-server --model PATH [--model-name NAME] [--tokenizer PATH] [--chat-template FILE] [--quant Q]
//               [--listen HOST:PORT] [--http-listen HOST:PORT] ...
//
// --http-listen adds the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/models, /health; server/api/openai_api.h, docs/openai-api.md) over the same engine; the TLS and token
// flags apply to it too, --max-message-bytes limits its request bodies (413 beyond).
//
// Chat: the model's own chat template (GGUF metadata or tokenizer_config.json), or --chat-template FILE, serves
// Chat/ChatStream/ApplyChatTemplate; a template that does not parse stops the start (exit 1).
//
// Lifecycle: listen first (health NOT_SERVING, generation UNAVAILABLE "model loading"), load the model, then
// SERVING. The first SIGTERM/SIGINT drains: health NOT_SERVING, new requests UNAVAILABLE, in-flight requests
// get up to --drain-seconds to finish (the rest end UNAVAILABLE), then the server stops and exits 0. A second
// signal exits at once with status 1.
//
// stderr carries the log; the line "qrag-server: listening on HOST:PORT" gives the bound port (use
// --listen 127.0.0.1:0 for a free one). Exit status: 0 after a signal-initiated shutdown, 2 for bad usage,
// 1 for any other failure (model cannot load, address cannot be bound, a TLS or token file that cannot be read
// or is malformed).
//
// Security: --tls-cert/--tls-key serve TLS only; --tls-client-ca also requires and verifies client
// certificates (mutual TLS); --auth-tokens FILE requires `authorization: Bearer <token>` metadata on every
// qrag.v1 call (grpc.health.v1 and reflection stay open). Without them the server is plaintext and open:
// keep it on loopback or a trusted network.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/api/grpc_server.h"
#include "server/api/openai_api.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/common/cli.h"
#include "server/common/config_file.h"
#include "server/common/status.h"
#include "server/engine/engine.h"
#include "server/engine/model_runner.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
#include "server/chat/chat_format.h"
#include "server/engine/model_bundle.h"
#include "server/http/http_server.h"
#include "server/metrics/metrics_stack.h"
#include "server/rag/index_spec.h"
#include "server/rag/postgres_store.h"
#include "server/rag/rag_runtime.h"
#include "server/tools/model_flags.h"

namespace qrag {
namespace {

constexpr char kProgram[] = "qrag-server";

struct ServerFlags {
  tools::ModelFlags model;
  std::string model_name;  // empty: the model's file or directory name (ValidateServerFlags fills it in)
  std::string listen = "127.0.0.1:50051";
  std::string http_listen;  // empty: no HTTP API
  std::string prefix_cache = "on";
  int http_threads = 2;
  engine::EngineOptions engine;
  int max_prompt_bytes = 1 << 20;
  int max_message_bytes = 4 << 20;
  double drain_seconds = 20;
  std::string tls_cert, tls_key, tls_client_ca, auth_tokens;
  std::string metrics_listen, energy_meter = "auto";
  int nvml_device = 0;
  std::string nvml_library = "libnvidia-ml.so.1", powercap_root = "/sys/class/powercap";
  int energy_sample_ms = 100;
  std::string embedder, data_dir, embedder_quant = "fp32", index_quant = "fp32";
  std::string embedder_device;  // empty: as --device
  std::string store, store_file;  // PostgreSQL instead of DIR/rag.sqlite
  int64_t rag_max_document_bytes = 8 << 20;
  int64_t rag_max_store_bytes = 0;
  int retrieval_threads = 4;
  int retrieval_queue = 256;
  bool check_config = false;
};

void AddServerFlags(CLI::App& app, ServerFlags* f) {
  tools::AddModelFlags(app, &f->model);
  app.add_option("--model-name", f->model_name,
                 "name clients use in GenerateRequest.model (default: the file/dir name, no extension)")
      ->type_name("NAME");
  app.add_option("--listen", f->listen,
                 "address to listen on (port 0 = any free port; 0.0.0.0:PORT accepts remote clients)")
      ->type_name("HOST:PORT");
  app.add_option("--http-listen", f->http_listen,
                 "also serve the OpenAI-compatible HTTP API here (default: off; port 0 = any free port, printed as "
                 "\"http on HOST:PORT\")")
      ->type_name("HOST:PORT");
  cli::AddNumber(app, "--http-threads", &f->http_threads, "I/O threads of the HTTP API (no thread per connection)");

  app.option_defaults()->group("Capacity and limits");
  engine::EngineOptions& e = f->engine;
  cli::AddNumber(app, "--max-running", &e.max_running, "sequences decoding at once");
  cli::AddNumber(app, "--max-waiting", &e.max_waiting, "queued requests; beyond: RESOURCE_EXHAUSTED");
  cli::AddNumber(app, "--max-batch-tokens", &e.max_batch_tokens,
                 "tokens per engine iteration, prefill chunks + decodes");
  cli::AddNumber(app, "--context", &e.context_length,
                 "tokens per request, prompt + completion (0: min(model's, 4096))");
  cli::AddNumber(app, "--kv-blocks", &e.num_kv_blocks, "KV-cache blocks (0: enough for max-running full contexts)");
  cli::AddNumber(app, "--block-size", &e.block_size, "positions per KV-cache block");
  cli::AddNumber(app, "--max-logprobs", &e.max_logprobs, "largest GenerateRequest.logprobs accepted");
  app.add_option("--prefix-cache", f->prefix_cache,
                 "reuse the KV of prompt prefixes already computed (whole blocks; output bit-identical to off)")
      ->type_name("{on,off}");
  cli::AddNumber(app, "--max-prompt-bytes", &f->max_prompt_bytes, "largest prompt accepted, in bytes");
  cli::AddNumber(app, "--max-message-bytes", &f->max_message_bytes,
                 "largest request message (gRPC: RESOURCE_EXHAUSTED beyond) or HTTP body (413 beyond)");
  cli::AddNumber(app, "--drain-seconds", &f->drain_seconds,
                 "on SIGTERM/SIGINT, how long in-flight requests may take to finish");
  cli::AddNumber(app, "--retrieval-threads", &f->retrieval_threads,
                 "threads for retrieval work (Retrieve, Embed, Ingest batches, Generate's rag option), off gRPC's "
                 "threads");
  cli::AddNumber(app, "--retrieval-queue", &f->retrieval_queue,
                 "retrieval calls that may wait for a thread; beyond: RESOURCE_EXHAUSTED");

  app.option_defaults()->group("Security (default: plaintext and open)");
  app.add_option("--tls-cert", f->tls_cert, "serve TLS with this PEM certificate (chain); needs --tls-key")
      ->type_name("FILE");
  app.add_option("--tls-key", f->tls_key, "the PEM private key of --tls-cert")->type_name("FILE");
  app.add_option("--tls-client-ca", f->tls_client_ca,
                 "mutual TLS: require client certificates signed by a CA in this PEM file")
      ->type_name("FILE");
  app.add_option("--auth-tokens", f->auth_tokens,
                 "require 'authorization: Bearer <token>' on qrag.v1 calls; FILE holds one token per line (blank "
                 "lines and '#' comments ignored); health and reflection stay open")
      ->type_name("FILE");

  app.option_defaults()->group("Metrics");
  app.add_option("--metrics-listen", f->metrics_listen,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (default: off; port 0 = any free port, "
                 "printed as \"metrics on HOST:PORT\")")
      ->type_name("HOST:PORT");
  app.add_option("--energy-meter", f->energy_meter,
                 "auto: NVML if libnvidia-ml.so.1 loads, else RAPL if /sys/class/powercap is readable, else none "
                 "(the log says which and why)")
      ->type_name("{auto,nvml,rapl,none}");
  cli::AddNumber(app, "--nvml-device", &f->nvml_device, "GPU index the NVML meter reads");
  app.add_option("--nvml-library", f->nvml_library, "NVML library to dlopen")->type_name("PATH");
  app.add_option("--powercap-root", f->powercap_root, "where RAPL's powercap zones are")->type_name("DIR");
  cli::AddNumber(app, "--energy-sample-ms", &f->energy_sample_ms, "energy meter sampling period in milliseconds");

  app.option_defaults()->group("RAG (off without --embedder)");
  app.add_option("--embedder", f->embedder,
                 "enable RAG (qrag.v1.Retrieval, GenerateRequest.rag) with this sentence-transformers BERT "
                 "directory (e.g. all-MiniLM-L6-v2); needs --data-dir")
      ->type_name("DIR");
  app.add_option("--data-dir", f->data_dir,
                 "where RAG collections are stored (DIR/rag.sqlite, created if missing); without --embedder it is "
                 "unused")
      ->type_name("DIR");
  app.add_option("--store", f->store,
                 "keep RAG collections in this PostgreSQL database instead of --data-dir's SQLite file, so that "
                 "several replicas share them (postgresql://user@host:port/dbname; a password is better kept out "
                 "of process lists: $QRAG_STORE or --store-file)")
      ->type_name("URL")
      ->envname("QRAG_STORE");
  app.add_option("--store-file", f->store_file,
                 "read --store's connection string (a URL or libpq key=value pairs) from this file, e.g. a "
                 "mounted secret")
      ->type_name("FILE");
  app.add_option("--embedder-quant", f->embedder_quant, "GEMMs of the embedder")->type_name("{fp32,bf16,fp8,int8}");
  app.add_option("--index-quant", f->index_quant, "exact-search corpus matrix")->type_name("{fp32,int8}");
  app.add_option("--embedder-device", f->embedder_device,
                 "where the embedder and the exact index run (default: as --device; on cuda the exact search is a "
                 "GEMM on the GPU)")
      ->type_name("{cuda,cpu,auto}");
  cli::AddNumber(app, "--rag-max-document-bytes", &f->rag_max_document_bytes, "largest document accepted by Ingest");
  cli::AddNumber(app, "--rag-max-store-bytes", &f->rag_max_store_bytes,
                 "cap on rag.sqlite; ingests past it are RESOURCE_EXHAUSTED (0: none)");

  app.option_defaults()->group("Configuration");
  // Main expands --config before CLI11 parses (cli::ExpandConfigFlags): the option is here for --help.
  app.add_option("--config", [](const CLI::results_t&) { return true; },
                 "read flags from a YAML file of `flag-name: value` lines (${ENV_VAR} and ${ENV_VAR:-default} are "
                 "expanded; a list repeats a flag); flags given on the command line override the file (see "
                 "deploy/qrag.yaml)")
      ->type_name("FILE");
  app.add_flag("--check-config", f->check_config,
               "parse the flags (and --config files), print them and exit: 0 when they are valid, 2 with the "
               "problem otherwise (loads nothing, listens nowhere)");
}

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

// Checks the flags; fills in the default --model-name.
absl::Status ValidateServerFlags(ServerFlags* f) {
  QRAG_RETURN_IF_ERROR(tools::ValidateModelFlags(f->model));
  // --data-dir alone is accepted (a container always mounts it; RAG stays off until --embedder is given).
  if (!f->store.empty() && !f->store_file.empty()) return Usage("--store and --store-file: give one");
  if (!f->store.empty() && !rag::IsPostgresUrl(f->store)) {
    return Usage("--store takes a postgresql:// URL (without it, collections live in --data-dir)");
  }
  if (!f->store_file.empty()) {
    std::ifstream in(f->store_file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return Usage(absl::StrCat("--store-file ", f->store_file, ": cannot read it"));
    f->store = std::string(absl::StripAsciiWhitespace(text.str()));
    if (f->store.empty()) return Usage(absl::StrCat("--store-file ", f->store_file, " is empty"));
  }
  if (!f->embedder.empty() && f->data_dir.empty() && f->store.empty()) {
    return Usage("--embedder needs --data-dir (where collections are stored) or --store (a PostgreSQL database)");
  }
  if (!f->store.empty() && f->rag_max_store_bytes > 0) {
    return Usage("--rag-max-store-bytes caps the SQLite file; with --store, PostgreSQL's disk is the database's");
  }
  if (!f->embedder_device.empty()) {
    absl::StatusOr<backend::Device> d = backend::ParseDevice(f->embedder_device);
    if (!d.ok()) return Usage(absl::StrCat("--embedder-device: ", d.status().message()));
  }
  if (f->rag_max_document_bytes <= 0 || f->rag_max_store_bytes < 0) {
    return Usage("--rag-max-document-bytes must be > 0 and --rag-max-store-bytes >= 0");
  }
  if (f->tls_cert.empty() != f->tls_key.empty()) return Usage("--tls-cert and --tls-key go together");
  if (!f->tls_client_ca.empty() && f->tls_cert.empty()) {
    return Usage("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key");
  }
  if (f->max_prompt_bytes <= 0) return Usage("--max-prompt-bytes must be > 0");
  if (f->max_message_bytes <= 0) return Usage("--max-message-bytes must be > 0");
  if (f->http_threads <= 0 || f->http_threads > 64) return Usage("--http-threads must be in [1, 64]");
  if (f->prefix_cache != "on" && f->prefix_cache != "off") return Usage("--prefix-cache must be on or off");
  f->engine.prefix_cache = f->prefix_cache == "on";
  if (f->retrieval_threads <= 0 || f->retrieval_queue <= 0) {
    return Usage("--retrieval-threads and --retrieval-queue must be > 0");
  }
  if (!(f->drain_seconds >= 0)) return Usage("--drain-seconds must be >= 0");
  if (!metrics::ParseEnergyMeterKind(f->energy_meter).ok()) {
    return Usage("--energy-meter must be auto, nvml, rapl or none");
  }
  if (f->nvml_device < 0) return Usage("--nvml-device must be >= 0");
  if (f->energy_sample_ms <= 0) return Usage("--energy-sample-ms must be > 0");
  const engine::EngineOptions& e = f->engine;
  if (e.max_running <= 0 || e.max_waiting <= 0 || e.max_batch_tokens <= 0 || e.block_size <= 0 ||
      e.context_length < 0 || e.num_kv_blocks < 0 || e.max_logprobs < 0) {
    return Usage("--max-running, --max-waiting, --max-batch-tokens and --block-size must be > 0; --context, "
                 "--kv-blocks and --max-logprobs >= 0");
  }
  if (f->model_name.empty()) {
    std::filesystem::path p(f->model.model);
    if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
    f->model_name = p.stem().string();
    if (f->model_name.empty()) f->model_name = "default";
  }
  return absl::OkStatus();
}

void Log(const std::string& line) {
  std::fprintf(stderr, "qrag-server: %s\n", line.c_str());
  std::fflush(stderr);
}

// Everything one served model needs, alive for as long as the server runs.
struct LoadedServable {
  std::unique_ptr<engine::ModelBundle> bundle;
  std::unique_ptr<engine::TransformerRunner> runner;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<chat::ChatFormat> chat;  // null: no chat template
};

absl::Status Load(const ServerFlags& args, engine::EngineHooks hooks, LoadedServable* out) {
  QRAG_ASSIGN_OR_RETURN(engine::ModelBundleOptions o, tools::ModelBundleOptionsOf(args.model));
  QRAG_ASSIGN_OR_RETURN(out->bundle, engine::LoadModelBundle(o));
  // The chat template: a template that does not parse stops the start (its message names file, line, column).
  QRAG_ASSIGN_OR_RETURN(std::optional<chat::TemplateSource> chat_source,
                        chat::FindChatTemplate(args.model.model, args.model.chat_template));
  if (chat_source.has_value()) {
    QRAG_ASSIGN_OR_RETURN(out->chat, chat::ChatFormat::Create(*std::move(chat_source), out->bundle->tokenizer.get()));
  }
  out->runner = std::make_unique<engine::TransformerRunner>(out->bundle->transformer.get());
  QRAG_ASSIGN_OR_RETURN(out->engine,
                        engine::Engine::Create(out->runner.get(), out->bundle->tokenizer.get(), args.engine, hooks));
  return absl::OkStatus();
}

// The registry, observer, energy meter and /metrics endpoint (server/metrics/metrics_stack.h).
absl::StatusOr<std::unique_ptr<metrics::MetricsStack>> StartMetrics(const ServerFlags& args) {
  metrics::MetricsStackOptions o;
  o.model = args.model_name;
  QRAG_ASSIGN_OR_RETURN(backend::Precision precision, backend::ParsePrecision(args.model.quant));
  o.precision = backend::PrecisionName(precision);
  o.listen_address = args.metrics_listen;
  QRAG_ASSIGN_OR_RETURN(o.energy.kind, metrics::ParseEnergyMeterKind(args.energy_meter));
  o.energy.nvml_device_index = args.nvml_device;
  o.energy.nvml_library = args.nvml_library;
  o.energy.powercap_root = args.powercap_root;
  o.sample_interval = absl::Milliseconds(args.energy_sample_ms);
  o.log = Log;
  return metrics::MetricsStack::Start(o);
}

absl::StatusOr<std::unique_ptr<rag::RagRuntime>> LoadRag(const ServerFlags& args, rag::RagObserver* observer) {
  rag::RagRuntimeOptions o;
  o.embedder_dir = args.embedder;
  QRAG_ASSIGN_OR_RETURN(o.embedder_precision, backend::ParsePrecision(args.embedder_quant));
  QRAG_ASSIGN_OR_RETURN(o.collections.index_precision, backend::ParsePrecision(args.index_quant));
  o.threads = args.model.threads;
  o.collections.data_dir = args.data_dir;
  o.collections.store = args.store;
  o.collections.max_document_bytes = args.rag_max_document_bytes;
  o.collections.max_store_bytes = args.rag_max_store_bytes;
  o.collections.observer = observer;
  backend::BackendOptions bo;
  bo.device = args.model.device;
  if (!args.embedder_device.empty()) {
    QRAG_ASSIGN_OR_RETURN(bo.device, backend::ParseDevice(args.embedder_device));
  }
  bo.cpu.num_threads = args.model.threads;
  bo.cpu.blas = true;  // on the CPU, fp32 GEMMs through OpenBLAS: embeddings need no batch invariance
  const bool own_flag = !args.embedder_device.empty();
  o.make_backend = [bo, own_flag]() -> absl::StatusOr<std::unique_ptr<backend::Backend>> {
    absl::StatusOr<std::unique_ptr<backend::Backend>> b = backend::CreateBackend(bo);
    if (!b.ok() && own_flag) {  // the registry's message names --device: name the flag that chose it
      return absl::Status(b.status().code(), absl::StrReplaceAll(b.status().message(),
                                                                 {{"--device", "--embedder-device"}}));
    }
    return b;
  };
  return rag::RagRuntime::Load(o);
}

api::ServedModel Describe(const ServerFlags& args, const LoadedServable& s) {
  const model::ModelConfig& c = s.bundle->checkpoint.config;
  api::ServedModel m;
  m.name = args.model_name;
  m.engine = s.engine.get();
  m.kv_block_size = args.engine.block_size;
  m.chat = s.chat.get();
  qrag::v1::ModelInfo& info = m.info;
  if (s.chat != nullptr) info.set_chat_template(s.chat->origin());
  info.set_name(args.model_name);
  info.set_architecture(c.architecture);
  info.set_precision(backend::PrecisionName(s.bundle->transformer->precision()));
  info.set_tokenizer(std::string(s.bundle->tokenizer->kind()));
  info.set_vocab_size(c.vocab_size);
  info.set_context_length(s.engine->context_length());
  info.set_max_seq_len(c.max_seq_len);
  info.set_n_layers(c.n_layers);
  info.set_dim(c.dim);
  info.set_n_heads(c.n_heads);
  info.set_n_kv_heads(c.n_kv_heads);
  int64_t parameters = 0;
  for (const auto& [name, tensor] : s.bundle->checkpoint.tensors) parameters += tensor.numel();
  info.set_parameters(parameters);
  info.set_max_logprobs(args.engine.max_logprobs);
  info.set_is_default(true);
  return m;
}

// SIGTERM/SIGINT reach a handler that writes the signal's number to a pipe (async-signal-safe), and a
// dedicated thread reads the pipe: the first one notifies `shutdown`, a second one exits at once. A handler
// rather than blocking the signals everywhere and sigwait-ing: threads that exist before main (OpenBLAS
// starts its pool when the library loads) never had the signals blocked, and the default action there would
// kill the server without draining.
int g_signal_pipe[2] = {-1, -1};

void OnShutdownSignal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

absl::Status StartSignalThread(absl::Notification* shutdown) {
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("cannot create the signal pipe: ", std::strerror(errno)));
  }
  struct sigaction sa {};
  sa.sa_handler = OnShutdownSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::thread([shutdown] {
    bool first = true;
    while (true) {
      unsigned char sig = 0;
      const ssize_t n = read(g_signal_pipe[0], &sig, 1);
      if (n != 1) continue;  // EINTR
      if (first) {
        first = false;
        Log(absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT", "; draining"));
        shutdown->Notify();
      } else {
        Log("second signal; exiting now");
        std::_Exit(1);
      }
    }
  }).detach();
  return absl::OkStatus();
}

// Serves until a signal has drained the server: 0, or 1 when it cannot start.
int Serve(const ServerFlags& args) {
  signal(SIGPIPE, SIG_IGN);
  absl::Notification shutdown;
  if (absl::Status s = StartSignalThread(&shutdown); !s.ok()) {
    Log(absl::StrCat("error: ", s.message()));
    return 1;
  }

  api::ValidationOptions validation;
  validation.models = {args.model_name};
  validation.max_prompt_bytes = args.max_prompt_bytes;
  validation.max_logprobs = args.engine.max_logprobs;
  api::ServingState state(validation);

  api::GrpcServerOptions server_options;
  server_options.listen_address = args.listen;
  server_options.max_receive_message_bytes = args.max_message_bytes;
  server_options.work_threads = args.retrieval_threads;
  server_options.work_max_queued = args.retrieval_queue;
  if (!args.tls_cert.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = api::LoadServerTlsCredentials(
        {.cert_chain = args.tls_cert, .private_key = args.tls_key, .client_ca = args.tls_client_ca});
    if (!credentials.ok()) {
      Log(absl::StrCat("error: ", credentials.status().message()));
      return 1;
    }
    server_options.credentials = *std::move(credentials);
  }
  if (!args.auth_tokens.empty()) {
    absl::StatusOr<api::TokenAuthenticator> tokens = api::TokenAuthenticator::FromFile(args.auth_tokens);
    if (!tokens.ok()) {
      Log(absl::StrCat("error: ", tokens.status().message()));
      return 1;
    }
    server_options.authenticator = std::make_shared<const api::TokenAuthenticator>(*std::move(tokens));
  }
  absl::StatusOr<std::unique_ptr<api::GrpcServer>> server = api::GrpcServer::Start(server_options, &state);
  if (!server.ok()) {
    Log(absl::StrCat("error: ", server.status().ToString()));
    return 1;
  }
  // Tests and scripts take the address from the rest of this line: keep it last.
  Log(absl::StrCat("listening on ", (*server)->address()));
  Log(absl::StrCat("security: ",
                   args.tls_cert.empty() ? "plaintext" : args.tls_client_ca.empty() ? "TLS" : "mutual TLS", ", ",
                   server_options.authenticator != nullptr
                       ? absl::StrCat(server_options.authenticator->size(), " bearer token(s)")
                       : "no authentication"));

  absl::StatusOr<std::unique_ptr<metrics::MetricsStack>> metrics_stack = StartMetrics(args);
  if (!metrics_stack.ok()) {
    Log(absl::StrCat("error: ", metrics_stack.status().message()));
    (*server)->Shutdown(absl::ZeroDuration());
    return 1;
  }
  if (!args.metrics_listen.empty()) Log(absl::StrCat("metrics on ", (*metrics_stack)->address()));
  state.set_rejection_observer(&(*metrics_stack)->serving());

  // The OpenAI-compatible HTTP API: the same state, work queue, TLS files and tokens as gRPC.
  api::OpenAiApi openai(&state, (*server)->work(), server_options.authenticator);
  std::unique_ptr<http::Server> http;
  if (!args.http_listen.empty()) {
    http::ServerOptions o;
    o.listen_address = args.http_listen;
    o.threads = args.http_threads;
    o.max_body_bytes = static_cast<size_t>(args.max_message_bytes);
    if (!args.tls_cert.empty()) {
      o.tls = http::TlsFiles{.cert_chain = args.tls_cert, .private_key = args.tls_key, .client_ca = args.tls_client_ca};
    }
    absl::StatusOr<std::unique_ptr<http::Server>> started = http::Server::Start(o, api::OpenAiApi::HandlerFor(&openai));
    if (!started.ok()) {
      Log(absl::StrCat("error: --http-listen: ", started.status().message()));
      (*server)->Shutdown(absl::ZeroDuration());
      return 1;
    }
    http = *std::move(started);
    Log(absl::StrCat("http on ", http->address()));
  }

  const absl::Time load_start = absl::Now();
  LoadedServable servable;
  if (absl::Status s = Load(args, (*metrics_stack)->hooks(), &servable); !s.ok()) {
    Log(absl::StrCat("error: cannot load ", args.model.model, ": ", s.ToString()));
    (*server)->Shutdown(absl::ZeroDuration());
    return 1;
  }
  std::unique_ptr<rag::RagRuntime> rag;
  if (!args.embedder.empty()) {
    absl::StatusOr<std::unique_ptr<rag::RagRuntime>> loaded = LoadRag(args, &(*metrics_stack)->rag());
    if (!loaded.ok()) {
      Log(absl::StrCat("error: RAG: ", loaded.status().ToString()));
      (*server)->Shutdown(absl::ZeroDuration());
      return 1;
    }
    rag = *std::move(loaded);
    state.SetRag(rag->collections.get());
    int64_t chunks = 0;
    const std::vector<rag::CollectionInfo> collections = rag->collections->List().value_or(
        std::vector<rag::CollectionInfo>{});  // just opened: the list was read a moment ago
    for (const rag::CollectionInfo& c : collections) chunks += c.chunks;
    Log(absl::StrCat("RAG: embedder ", rag->encoder->model_id(), " (", backend::PrecisionName(rag->encoder->precision()),
                     ", dim ", rag->encoder->dim(), ", on ", std::string(rag->encoder_backend->name()),
                     rag->encoder_backend->name() == "cpu" ? absl::StrCat(" with ", backend::CpuBackend::BlasDescription())
                                                           : std::string(),
                     "), ",
                     collections.size(), " collection(s), ", chunks,
                     " chunks indexed from ", rag->collections->store_description()));
    for (const std::string& name : rag->collections->keyword_indexes_built()) {
      Log(absl::StrCat("RAG: collection '", name, "' predates keyword search: built its BM25 index from its chunks "
                       "(once; hybrid and bm25 modes now serve it)"));
    }
    for (const rag::CollectionInfo& c : collections) {  // which index serves each (exact, FAISS HNSW / IVF)
      Log(absl::StrCat("RAG: collection '", c.name, "': ", rag::IndexSpecToString(c.index), " [", c.index_status, "]"));
    }
  }
  if (absl::Status s = state.Publish(Describe(args, servable)); !s.ok()) {
    Log(absl::StrCat("error: ", s.ToString()));
    return 1;
  }
  if (!shutdown.HasBeenNotified()) (*server)->SetServing(true);
  const engine::EngineStats stats = servable.engine->Stats();
  Log(absl::StrCat("serving '", args.model_name, "' (", args.model.model, ", tokenizer ", servable.bundle->tokenizer_path, ", ",
                   backend::PrecisionName(servable.bundle->transformer->precision()), ", context ",
                   servable.engine->context_length(), ", ", stats.kv_blocks_total, " KV blocks of ",
                   args.engine.block_size, ", prefix cache ", args.prefix_cache, ", max running ",
                   args.engine.max_running, ", max waiting ", args.engine.max_waiting, ") after ",
                   absl::StrFormat("%.2f", absl::ToDoubleSeconds(absl::Now() - load_start)), " s"));

  if (servable.chat != nullptr) {
    Log(absl::StrCat("chat template: ", servable.chat->origin(), " (end of turn: token ",
                     absl::StrJoin(servable.chat->end_of_turn_ids(), ", "), " and the tokenizer's EOS)"));
  } else {
    Log("no chat template: Chat is FAILED_PRECONDITION (give one with --chat-template FILE)");
  }

  shutdown.WaitForNotification();
  state.StartDraining();
  (*server)->SetServing(false);
  const absl::Duration grace = absl::Seconds(args.drain_seconds);
  const engine::EngineStats at_signal = servable.engine->Stats();
  Log(absl::StrCat("draining: ", at_signal.running + at_signal.waiting, " requests in flight, up to ",
                   absl::FormatDuration(grace)));
  servable.engine->Drain(grace);
  // Every request has finished in the engine; let the reactors deliver their last messages (a client that
  // stopped reading gets 2 s), then stop. gRPC's Shutdown would otherwise wait out its whole deadline for
  // idle client connections.
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (state.active_calls() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  if (http != nullptr) http->Shutdown(absl::ZeroDuration());
  (*server)->Shutdown(absl::ZeroDuration());
  Log("stopped");
  return 0;
}

int Main(int argc, char** argv) {
  // Config files first: their flags become arguments ahead of the command line's (the last value wins).
  absl::StatusOr<std::vector<std::string>> expanded =
      cli::ExpandConfigFlags(std::vector<std::string>(argv, argv + argc), cli::ProcessEnv());
  if (!expanded.ok()) cli::UsageError(kProgram, expanded.status().message());
  std::unique_ptr<CLI::App> app = cli::NewApp(
      kProgram, "Serves a llama2.c checkpoint (.bin), a GGUF file or a Hugging Face Llama/Mistral/Qwen2 directory "
                "over gRPC (qrag.v1.Inference, qrag.v1.Admin, grpc.health.v1, server reflection).");
  ServerFlags flags;
  AddServerFlags(*app, &flags);
  cli::ParseFlagsOrExit(*app, *expanded, [&] { return ValidateServerFlags(&flags); });
  if (flags.check_config) {
    // The flags as the server sees them (config files expanded); reaching here means they all parsed.
    for (size_t i = 1; i < expanded->size(); ++i) {
      if ((*expanded)[i] != "--check-config") std::printf("%s\n", (*expanded)[i].c_str());
    }
    std::printf("qrag-server: configuration OK\n");
    return 0;
  }
  return Serve(flags);
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) {
  qrag::backend::RestartForOpenBlasKernels(argv);  // the embedder's GEMMs: OpenBLAS's kernels for this CPU
  return qrag::Main(argc, argv);
}
