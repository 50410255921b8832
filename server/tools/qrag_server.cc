// qrag-server: serves a model over gRPC (qrag.v1.Inference, qrag.v1.Admin, grpc.health.v1, reflection).
//
//   qrag-server --model PATH [--model-name NAME] [--tokenizer PATH] [--quant Q] [--listen HOST:PORT] ...
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
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "server/common/cli.h"
#include "server/common/config_file.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/api/grpc_server.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/common/status.h"
#include "server/engine/engine.h"
#include "server/engine/model_runner.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
#include "server/engine/model_bundle.h"
#include "server/metrics/metrics_stack.h"
#include "server/rag/index_spec.h"
#include "server/rag/rag_runtime.h"

namespace qrag {
namespace {

constexpr char kUsage[] = R"(usage: qrag-server --model PATH [options]

Serves a llama2.c checkpoint (.bin) or a Hugging Face Llama/Mistral/Qwen2 directory over gRPC
(qrag.v1.Inference, qrag.v1.Admin, grpc.health.v1, server reflection).

  --model PATH              model file or directory (required)
  --model-name NAME         name clients use in GenerateRequest.model (default: the file/dir name, no extension)
  --tokenizer PATH          tokenizer file (default: found next to the model)
  --quant Q                 fp32 | bf16 | fp8 | int8 | w4 (default fp32; w4 on the CPU backend)
  --listen HOST:PORT        address to listen on (default 127.0.0.1:50051; port 0 = any free port;
                            0.0.0.0:PORT accepts remote clients)
  --threads N               CPU threads for the model (default: all)
  --device D                cuda | cpu | auto (default auto: cuda when a GPU is present, else cpu)
  --max-running N           sequences decoding at once (default 16)
  --max-waiting N           queued requests; beyond: RESOURCE_EXHAUSTED (default 256)
  --max-batch-tokens N      tokens per engine iteration, prefill chunks + decodes (default 256)
  --context N               tokens per request, prompt + completion (default: min(model's, 4096))
  --kv-blocks N             KV-cache blocks (default: enough for max-running full contexts)
  --block-size N            positions per KV-cache block (default 16)
  --max-logprobs N          largest GenerateRequest.logprobs accepted (default 20)
  --max-prompt-bytes N      largest prompt accepted, in bytes (default 1048576)
  --max-message-bytes N     largest request message; beyond: RESOURCE_EXHAUSTED (default 4194304)
  --tls-cert FILE           serve TLS with this PEM certificate (chain); needs --tls-key
  --tls-key FILE            the PEM private key of --tls-cert
  --tls-client-ca FILE      mutual TLS: require client certificates signed by a CA in this PEM file
  --auth-tokens FILE        require 'authorization: Bearer <token>' on qrag.v1 calls; FILE holds one token per
                            line (blank lines and '#' comments ignored); health and reflection stay open
  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (default: off; port 0 = any
                            free port, printed as "metrics on HOST:PORT")
  --energy-meter M          auto | nvml | rapl | none (default auto: NVML if libnvidia-ml.so.1 loads, else RAPL
                            if /sys/class/powercap is readable, else none; the log says which and why)
  --nvml-device N           GPU index the NVML meter reads (default 0)
  --nvml-library PATH       NVML library to dlopen (default libnvidia-ml.so.1)
  --powercap-root DIR       where RAPL's powercap zones are (default /sys/class/powercap)
  --energy-sample-ms N      energy meter sampling period in milliseconds (default 100)
  --drain-seconds S         on SIGTERM/SIGINT, how long in-flight requests may take to finish (default 20)
  --config FILE             read flags from a YAML file of `flag-name: value` lines (${ENV_VAR} and
                            ${ENV_VAR:-default} are expanded; a list repeats a flag); flags given on the
                            command line override the file (see deploy/qrag.yaml)
  --check-config            parse the flags (and --config files), print them and exit: 0 when they are
                            valid, 2 with the problem otherwise (loads nothing, listens nowhere)
  --embedder DIR            enable RAG (qrag.v1.Retrieval, GenerateRequest.rag) with this sentence-transformers
                            BERT directory (e.g. all-MiniLM-L6-v2); needs --data-dir
  --data-dir DIR            where RAG collections are stored (DIR/rag.sqlite, created if missing); without
                            --embedder it is unused
  --embedder-quant Q        fp32 | bf16 | fp8 | int8 GEMMs of the embedder (default fp32)
  --index-quant Q           fp32 | int8 exact-search corpus matrix (default fp32)
  --rag-max-document-bytes N  largest document accepted by Ingest (default 8388608)
  --rag-max-store-bytes N   cap on rag.sqlite; ingests past it are RESOURCE_EXHAUSTED (default 0: none)
  --help                    this text
)";

struct Args {
  std::string model, model_name, tokenizer, quant = "fp32", listen = "127.0.0.1:50051";
  std::string tls_cert, tls_key, tls_client_ca, auth_tokens;
  std::string metrics_listen, energy_meter = "auto";
  int nvml_device = 0;
  std::string nvml_library = "libnvidia-ml.so.1", powercap_root = "/sys/class/powercap";
  int energy_sample_ms = 100;
  int threads = 0;
  backend::Device device = backend::Device::kAuto;
  int max_prompt_bytes = 1 << 20;
  int max_message_bytes = 4 << 20;
  double drain_seconds = 20;
  bool check_config = false;
  engine::EngineOptions engine;
  std::string embedder, data_dir, embedder_quant = "fp32", index_quant = "fp32";
  int64_t rag_max_document_bytes = 8 << 20;
  int64_t rag_max_store_bytes = 0;
};

constexpr char kProgram[] = "qrag-server";

[[noreturn]] void UsageError(const std::string& msg) { cli::UsageError(kProgram, msg); }

template <typename T>
T ParseNumber(const std::string& flag, const std::string& text) {
  return cli::ParseNumber<T>(kProgram, flag, text);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--check-config") {
      a.check_config = true;
      continue;
    }
    const std::string value = cli::FlagValue(kProgram, argc, argv, &i, &flag);
    if (flag == "--model") a.model = value;
    else if (flag == "--model-name") a.model_name = value;
    else if (flag == "--tokenizer") a.tokenizer = value;
    else if (flag == "--quant") a.quant = value;
    else if (flag == "--listen") a.listen = value;
    else if (flag == "--threads") a.threads = ParseNumber<int>(flag, value);
    else if (flag == "--device") {
      absl::StatusOr<backend::Device> d = backend::ParseDevice(value);
      if (!d.ok()) UsageError(std::string(d.status().message()));
      a.device = *d;
    }
    else if (flag == "--max-running") a.engine.max_running = ParseNumber<int>(flag, value);
    else if (flag == "--max-waiting") a.engine.max_waiting = ParseNumber<int>(flag, value);
    else if (flag == "--max-batch-tokens") a.engine.max_batch_tokens = ParseNumber<int>(flag, value);
    else if (flag == "--context") a.engine.context_length = ParseNumber<int>(flag, value);
    else if (flag == "--kv-blocks") a.engine.num_kv_blocks = ParseNumber<int>(flag, value);
    else if (flag == "--block-size") a.engine.block_size = ParseNumber<int>(flag, value);
    else if (flag == "--max-logprobs") a.engine.max_logprobs = ParseNumber<int>(flag, value);
    else if (flag == "--max-prompt-bytes") a.max_prompt_bytes = ParseNumber<int>(flag, value);
    else if (flag == "--max-message-bytes") a.max_message_bytes = ParseNumber<int>(flag, value);
    else if (flag == "--tls-cert") a.tls_cert = value;
    else if (flag == "--tls-key") a.tls_key = value;
    else if (flag == "--tls-client-ca") a.tls_client_ca = value;
    else if (flag == "--auth-tokens") a.auth_tokens = value;
    else if (flag == "--metrics-listen") a.metrics_listen = value;
    else if (flag == "--energy-meter") a.energy_meter = value;
    else if (flag == "--nvml-device") a.nvml_device = ParseNumber<int>(flag, value);
    else if (flag == "--nvml-library") a.nvml_library = value;
    else if (flag == "--powercap-root") a.powercap_root = value;
    else if (flag == "--energy-sample-ms") a.energy_sample_ms = ParseNumber<int>(flag, value);
    else if (flag == "--drain-seconds") a.drain_seconds = ParseNumber<double>(flag, value);
    else if (flag == "--embedder") a.embedder = value;
    else if (flag == "--data-dir") a.data_dir = value;
    else if (flag == "--embedder-quant") a.embedder_quant = value;
    else if (flag == "--index-quant") a.index_quant = value;
    else if (flag == "--rag-max-document-bytes") a.rag_max_document_bytes = ParseNumber<int64_t>(flag, value);
    else if (flag == "--rag-max-store-bytes") a.rag_max_store_bytes = ParseNumber<int64_t>(flag, value);
    else UsageError(absl::StrCat("unknown option ", flag));
  }
  if (a.model.empty()) UsageError("--model PATH is required");
  // --data-dir alone is accepted (a container always mounts it; RAG stays off until --embedder is given).
  if (!a.embedder.empty() && a.data_dir.empty()) UsageError("--embedder needs --data-dir (where collections are stored)");
  if (a.rag_max_document_bytes <= 0 || a.rag_max_store_bytes < 0) {
    UsageError("--rag-max-document-bytes must be > 0 and --rag-max-store-bytes >= 0");
  }
  if (a.tls_cert.empty() != a.tls_key.empty()) UsageError("--tls-cert and --tls-key go together");
  if (!a.tls_client_ca.empty() && a.tls_cert.empty()) {
    UsageError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key");
  }
  if (a.threads < 0) UsageError("--threads must be >= 0");
  if (a.max_prompt_bytes <= 0) UsageError("--max-prompt-bytes must be > 0");
  if (a.max_message_bytes <= 0) UsageError("--max-message-bytes must be > 0");
  if (!(a.drain_seconds >= 0)) UsageError("--drain-seconds must be >= 0");
  if (!metrics::ParseEnergyMeterKind(a.energy_meter).ok()) UsageError("--energy-meter must be auto, nvml, rapl or none");
  if (a.nvml_device < 0) UsageError("--nvml-device must be >= 0");
  if (a.energy_sample_ms <= 0) UsageError("--energy-sample-ms must be > 0");
  if (a.engine.max_running <= 0 || a.engine.max_waiting <= 0 || a.engine.max_batch_tokens <= 0 ||
      a.engine.block_size <= 0 || a.engine.context_length < 0 || a.engine.num_kv_blocks < 0 ||
      a.engine.max_logprobs < 0) {
    UsageError("--max-running, --max-waiting, --max-batch-tokens and --block-size must be > 0; --context, "
               "--kv-blocks and --max-logprobs >= 0");
  }
  if (a.model_name.empty()) {
    std::filesystem::path p(a.model);
    if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
    a.model_name = p.stem().string();
    if (a.model_name.empty()) a.model_name = "default";
  }
  return a;
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
};

absl::Status Load(const Args& args, engine::EngineHooks hooks, LoadedServable* out) {
  engine::ModelBundleOptions o;
  o.model_path = args.model;
  o.tokenizer_path = args.tokenizer;
  QRAG_ASSIGN_OR_RETURN(o.precision, backend::ParsePrecision(args.quant));
  o.cpu.num_threads = args.threads;
  o.device = args.device;
  QRAG_ASSIGN_OR_RETURN(out->bundle, engine::LoadModelBundle(o));
  out->runner = std::make_unique<engine::TransformerRunner>(out->bundle->transformer.get());
  QRAG_ASSIGN_OR_RETURN(out->engine,
                        engine::Engine::Create(out->runner.get(), out->bundle->tokenizer.get(), args.engine, hooks));
  return absl::OkStatus();
}

// The registry, observer, energy meter and /metrics endpoint (server/metrics/metrics_stack.h).
absl::StatusOr<std::unique_ptr<metrics::MetricsStack>> StartMetrics(const Args& args) {
  metrics::MetricsStackOptions o;
  o.model = args.model_name;
  QRAG_ASSIGN_OR_RETURN(backend::Precision precision, backend::ParsePrecision(args.quant));
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

absl::StatusOr<std::unique_ptr<rag::RagRuntime>> LoadRag(const Args& args, rag::RagObserver* observer) {
  rag::RagRuntimeOptions o;
  o.embedder_dir = args.embedder;
  QRAG_ASSIGN_OR_RETURN(o.embedder_precision, backend::ParsePrecision(args.embedder_quant));
  QRAG_ASSIGN_OR_RETURN(o.collections.index_precision, backend::ParsePrecision(args.index_quant));
  o.threads = args.threads;
  o.collections.data_dir = args.data_dir;
  o.collections.max_document_bytes = args.rag_max_document_bytes;
  o.collections.max_store_bytes = args.rag_max_store_bytes;
  o.collections.observer = observer;
  return rag::RagRuntime::Load(o);
}

api::ServedModel Describe(const Args& args, const LoadedServable& s) {
  const model::ModelConfig& c = s.bundle->checkpoint.config;
  api::ServedModel m;
  m.name = args.model_name;
  m.engine = s.engine.get();
  m.kv_block_size = args.engine.block_size;
  qrag::v1::ModelInfo& info = m.info;
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

// Waits for SIGTERM/SIGINT on a dedicated thread (the signals are blocked in every other thread, so the
// gRPC and engine threads never see them). The first one notifies `shutdown`; a second one exits at once.
void StartSignalThread(const sigset_t& signals, absl::Notification* shutdown) {
  std::thread([signals, shutdown] {
    bool first = true;
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
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
}

int Main(int argc, char** argv) {
  absl::StatusOr<std::vector<std::string>> expanded =
      cli::ExpandConfigFlags(std::vector<std::string>(argv, argv + argc), cli::ProcessEnv());
  if (!expanded.ok()) UsageError(std::string(expanded.status().message()));
  std::vector<char*> expanded_argv;
  for (std::string& arg : *expanded) expanded_argv.push_back(arg.data());
  const Args args = ParseArgs(static_cast<int>(expanded_argv.size()), expanded_argv.data());
  if (args.check_config) {
    // The flags as the server sees them (config files expanded); reaching here means they all parsed.
    for (size_t i = 1; i < expanded->size(); ++i) {
      if ((*expanded)[i] != "--check-config") std::printf("%s\n", (*expanded)[i].c_str());
    }
    std::printf("qrag-server: configuration OK\n");
    return 0;
  }

  // Block the shutdown signals before any thread exists: threads inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  absl::Notification shutdown;
  StartSignalThread(signals, &shutdown);

  api::ValidationOptions validation;
  validation.models = {args.model_name};
  validation.max_prompt_bytes = args.max_prompt_bytes;
  validation.max_logprobs = args.engine.max_logprobs;
  api::ServingState state(validation);

  api::GrpcServerOptions server_options;
  server_options.listen_address = args.listen;
  server_options.max_receive_message_bytes = args.max_message_bytes;
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

  const absl::Time load_start = absl::Now();
  LoadedServable servable;
  if (absl::Status s = Load(args, (*metrics_stack)->hooks(), &servable); !s.ok()) {
    Log(absl::StrCat("error: cannot load ", args.model, ": ", s.ToString()));
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
    const std::vector<rag::CollectionInfo> collections = rag->collections->List();
    for (const rag::CollectionInfo& c : collections) chunks += c.chunks;
    Log(absl::StrCat("RAG: embedder ", rag->encoder->model_id(), " (", backend::PrecisionName(rag->encoder->precision()),
                     ", dim ", rag->encoder->dim(), "), ", collections.size(), " collection(s), ", chunks,
                     " chunks indexed from ", args.data_dir));
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
  Log(absl::StrCat("serving '", args.model_name, "' (", args.model, ", tokenizer ", servable.bundle->tokenizer_path, ", ",
                   backend::PrecisionName(servable.bundle->transformer->precision()), ", context ",
                   servable.engine->context_length(), ", ", stats.kv_blocks_total, " KV blocks of ",
                   args.engine.block_size, ", max running ", args.engine.max_running, ", max waiting ",
                   args.engine.max_waiting, ") after ",
                   absl::StrFormat("%.2f", absl::ToDoubleSeconds(absl::Now() - load_start)), " s"));

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
  (*server)->Shutdown(absl::ZeroDuration());
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
