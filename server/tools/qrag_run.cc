// qrag-run: offline generation with a real model on the CPU or CUDA backend, for first use and tests.
//
//   qrag-run --model PATH [--quant fp32|bf16|fp8|int8|w4] [--device cuda|cpu|auto] --prompt TEXT --max-tokens N
//            [--temperature T --top-p P --top-k K --min-p P --repetition-penalty R --seed S --stop STR]
//   qrag-run --model PATH --chat [--message TEXT] [--system TEXT] [--chat-template FILE] ...
//            (one chat turn with --message; without it, a conversation reading one message per line from stdin)
//   qrag-run --model PATH [--quant Q] [--device D] --perplexity FILE [--ctx N]
//
// Prints the completion (not the prompt) to stdout as it is generated, followed by a newline, and the
// speed to stderr. With --perplexity, scores the UTF-8 text FILE instead (engine/perplexity.h has the
// definition: no BOS, windows of N tokens, a final partial window dropped) and prints
// "perplexity: P over T tokens" and "mean nll: X nats" to stdout, the windows and the speed to stderr.
// Exit status 0 on success, 2 for bad command-line usage, 1 for any other error.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/cli.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/chat/chat_format.h"
#include "server/engine/generator.h"
#include "server/engine/perplexity.h"
#include "server/engine/model_bundle.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
#include "server/model/utf8.h"
#include "server/tools/model_flags.h"

namespace qrag {
namespace {

constexpr char kProgram[] = "qrag-run";

struct RunFlags {
  tools::ModelFlags model;
  std::string prompt, prompt_file;
  int max_tokens = 256;
  int context = 0;  // 0: min(model's, 4096)
  engine::SamplingParams sampling = [] {
    engine::SamplingParams p;
    p.top_p = 0.9f;  // llama2.c's run.c default
    return p;
  }();
  std::vector<std::string> stop;
  bool reference = false;
  std::string perplexity_file;  // non-empty: score this text instead of generating
  int perplexity_window = 512;
  // --chat: the model's chat template over --message (and --system) instead of a raw prompt.
  bool chat = false;
  std::string message, system;
};

void AddRunFlags(CLI::App& app, RunFlags* f) {
  tools::AddModelFlags(app, &f->model);
  app.add_option("--prompt", f->prompt, "prompt text (empty: start from BOS)");
  app.add_option("--prompt-file", f->prompt_file, "read the prompt from this file instead")->type_name("PATH");
  cli::AddNumber(app, "--max-tokens", &f->max_tokens, "tokens to generate");
  cli::AddNumber(app, "--temperature", &f->sampling.temperature, "0 = greedy");
  cli::AddNumber(app, "--top-p", &f->sampling.top_p, "nucleus sampling, (0, 1]");
  cli::AddNumber(app, "--top-k", &f->sampling.top_k, "keep the K most likely tokens, 0 = off");
  cli::AddNumber(app, "--min-p", &f->sampling.min_p, "drop tokens below P x the top probability");
  cli::AddNumber(app, "--repetition-penalty", &f->sampling.repetition_penalty, "> 0, 1 = off");
  cli::AddNumber(app, "--seed", &f->sampling.seed, "random seed (default: random)");
  cli::AddRepeated(app, "--stop", &f->stop, "stop before this text (repeatable)");
  cli::AddNumber(app, "--context", &f->context, "context length to allocate (0: min(model's, 4096))");
  app.add_flag("--chat", f->chat,
               "chat through the model's chat template (see --chat-template): one turn with --message, else "
               "an interactive session reading one message per line from stdin (/reset, /quit)");
  app.add_option("--message", f->message, "with --chat: the user's message")->type_name("TEXT");
  app.add_option("--system", f->system, "with --chat: the system prompt")->type_name("TEXT");
  app.add_flag("--reference", f->reference,
               "use the CPU backend's plain-loop reference kernels (slow; for checking; implies --device cpu)");
  app.add_option("--perplexity", f->perplexity_file,
                 "print the model's perplexity on this UTF-8 text file (no BOS; windows of --ctx tokens; a final "
                 "partial window is dropped) instead of generating")
      ->type_name("FILE");
  cli::AddNumber(app, "--ctx", &f->perplexity_window,
                 "--perplexity window in tokens, in [2, the model's context length]");
}

// Checks the flags; --reference settles the device.
absl::Status ValidateRunFlags(RunFlags* f) {
  QRAG_RETURN_IF_ERROR(tools::ValidateModelFlags(f->model));
  if (!f->prompt.empty() && !f->prompt_file.empty()) {
    return absl::InvalidArgumentError("give --prompt or --prompt-file, not both");
  }
  if (f->chat) {
    if (!f->prompt.empty() || !f->prompt_file.empty()) {
      return absl::InvalidArgumentError("--chat takes --message, not --prompt / --prompt-file");
    }
  } else if (!f->message.empty() || !f->system.empty()) {
    return absl::InvalidArgumentError("--message and --system go with --chat");
  }
  if (f->reference) {
    if (f->model.device == backend::Device::kCuda) {
      return absl::InvalidArgumentError("--reference runs the CPU reference kernels: use --device cpu");
    }
    f->model.device = backend::Device::kCpu;
  }
  if (!f->perplexity_file.empty() && (!f->prompt.empty() || !f->prompt_file.empty() || f->chat)) {
    return absl::InvalidArgumentError(
        "--perplexity scores a file: give no --prompt, --prompt-file or --chat with it");
  }
  return absl::OkStatus();
}

// The --perplexity file's text, checked to be UTF-8 (before the model loads, so that a wrong path fails fast).
absl::StatusOr<std::string> ReadPerplexityText(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("--perplexity: ", text.status().message()));
  }
  QRAG_RETURN_IF_ERROR(model::CheckUtf8(*text, absl::StrCat("--perplexity file ", path)));
  return text;
}

// Tokenizes `text` without BOS, scores it and prints the result.
absl::Status RunPerplexity(const RunFlags& args, const std::string& text, engine::ModelBundle& bundle) {
  model::EncodeOptions encode;
  encode.add_bos = false;
  QRAG_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, bundle.tokenizer->Encode(text, encode));
  engine::PerplexityOptions po;
  po.window = args.perplexity_window;
  const absl::Time start = absl::Now();
  QRAG_ASSIGN_OR_RETURN(engine::PerplexityResult r, engine::ComputePerplexity(*bundle.transformer, tokens, po));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("perplexity: %.4f over %lld tokens\nmean nll: %.6f nats\n", r.perplexity,
              static_cast<long long>(r.tokens_scored), r.mean_nll);
  std::fflush(stdout);
  std::fprintf(stderr,
               "qrag-run: %s, %s weights on %s: %zu tokens, %d windows of %d (each scored from its second token), "
               "%lld final tokens dropped; %.3f s, %.1f tok/s\n",
               args.model.model.c_str(), args.model.quant.c_str(), std::string(bundle.backend->name()).c_str(),
               tokens.size(), r.windows, po.window, static_cast<long long>(r.tokens_dropped), seconds,
               seconds > 0 ? static_cast<double>(r.windows) * po.window / seconds : 0.0);
  return absl::OkStatus();
}

absl::Status Run(const RunFlags& args) {
  QRAG_ASSIGN_OR_RETURN(engine::ModelBundleOptions mo, tools::ModelBundleOptionsOf(args.model));
  mo.cpu.reference = args.reference;
  std::string prompt = args.prompt;
  if (!args.prompt_file.empty()) {
    QRAG_ASSIGN_OR_RETURN(prompt, ReadFileToString(args.prompt_file));
  }
  std::string perplexity_text;
  if (!args.perplexity_file.empty()) {
    QRAG_ASSIGN_OR_RETURN(perplexity_text, ReadPerplexityText(args.perplexity_file));
  }
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<engine::ModelBundle> bundle, engine::LoadModelBundle(mo));
  if (!args.perplexity_file.empty()) return RunPerplexity(args, perplexity_text, *bundle);
  model::Transformer* transformer = bundle->transformer.get();
  model::Tokenizer* tokenizer = bundle->tokenizer.get();
  const std::string& tokenizer_path = bundle->tokenizer_path;
  const backend::Precision precision = mo.precision;
  const backend::Backend& device = *bundle->backend;
  engine::GeneratorOptions go;
  go.context_length = args.context;
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<engine::Generator> generator,
                        engine::Generator::Create(transformer, tokenizer, go));

  engine::GenerateRequest request;
  request.prompt = prompt;
  request.max_tokens = args.max_tokens;
  request.sampling = args.sampling;
  request.stop = args.stop;
  auto generate = [&](const engine::GenerateRequest& r) -> absl::StatusOr<engine::GenerateResult> {
    QRAG_ASSIGN_OR_RETURN(engine::GenerateResult result, generator->Generate(r, [](std::string_view text) {
                            std::fwrite(text.data(), 1, text.size(), stdout);
                            std::fflush(stdout);
                          }));
    std::fputs("\n", stdout);
    std::fflush(stdout);
    return result;
  };
  if (!args.chat && !args.model.chat_template.empty()) {
    return absl::InvalidArgumentError("--chat-template goes with --chat");
  }
  std::unique_ptr<chat::ChatFormat> chat_format;
  if (args.chat) {
    QRAG_ASSIGN_OR_RETURN(std::optional<chat::TemplateSource> source,
                          chat::FindChatTemplate(args.model.model, args.model.chat_template));
    if (!source.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(args.model.model, " has no chat template; give one with --chat-template FILE"));
    }
    QRAG_ASSIGN_OR_RETURN(chat_format, chat::ChatFormat::Create(*std::move(source), tokenizer));
    request.extra_stop_ids = chat_format->end_of_turn_ids();
  }
  // One chat turn over `history` (the system prompt first when given).
  auto chat_turn = [&](const std::vector<chat::Message>& history) -> absl::StatusOr<engine::GenerateResult> {
    std::vector<chat::Message> messages;
    if (!args.system.empty()) messages.push_back({"system", args.system});
    messages.insert(messages.end(), history.begin(), history.end());
    QRAG_ASSIGN_OR_RETURN(chat::ChatPrompt rendered, chat_format->Apply(messages, /*add_generation_prompt=*/true));
    engine::GenerateRequest r = request;
    r.prompt = std::move(rendered.text);
    r.prompt_ids = std::move(rendered.token_ids);
    return generate(r);
  };
  if (args.chat && args.message.empty()) {  // interactive: one message per line
    const bool terminal = isatty(STDIN_FILENO) != 0;
    std::vector<chat::Message> history;
    std::string line;
    while (true) {
      if (terminal) std::fputs("you> ", stderr);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      if (line == "/quit") break;
      if (line == "/reset") {
        history.clear();
        continue;
      }
      history.push_back({"user", line});
      absl::StatusOr<engine::GenerateResult> turn = chat_turn(history);
      if (!turn.ok()) {
        std::fprintf(stderr, "qrag-run: error: %s\n", turn.status().ToString().c_str());
        history.pop_back();
        continue;
      }
      history.push_back({"assistant", turn->text});
      std::fprintf(stderr, "qrag-run: prompt %zu tokens, generated %zu tokens, finish=%s\n", turn->prompt_ids.size(),
                   turn->output_ids.size(), engine::FinishReasonName(turn->finish_reason));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<engine::GenerateResult> generated =
      args.chat ? chat_turn({{"user", args.message}}) : generate(request);
  QRAG_RETURN_IF_ERROR(generated.status());
  const engine::GenerateResult& result = *generated;

  const double gen = static_cast<double>(result.output_ids.size());
  std::fprintf(stderr,
               "qrag-run: %s on %s (%s), %s weights; prompt %zu tokens (%.1f tok/s), generated %zu tokens in "
               "%.3f s: %.2f tok/s, finish=%s, seed=%llu\n",
               args.model.model.c_str(), std::string(device.name()).c_str(), tokenizer_path.c_str(),
               backend::PrecisionName(precision), result.prompt_ids.size(),
               result.prefill_seconds > 0 ? result.prompt_ids.size() / result.prefill_seconds : 0.0,
               result.output_ids.size(), result.decode_seconds,
               result.decode_seconds > 0 ? gen / result.decode_seconds : 0.0,
               engine::FinishReasonName(result.finish_reason), static_cast<unsigned long long>(result.seed));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::unique_ptr<CLI::App> app = cli::NewApp(
      kProgram, "Generates text offline with a llama2.c checkpoint (.bin), a GGUF file (llama, qwen2) or a Hugging "
                "Face Llama/Mistral/Qwen2 directory: the completion to stdout, the speed to stderr.");
  RunFlags flags;
  AddRunFlags(*app, &flags);
  cli::ParseFlagsOrExit(*app, argc, argv, [&]() -> absl::Status {
    if (app->count("--ctx") > 0 && flags.perplexity_file.empty()) {
      return absl::InvalidArgumentError("--ctx is the --perplexity window: give --perplexity FILE with it");
    }
    return ValidateRunFlags(&flags);
  });
  if (absl::Status s = Run(flags); !s.ok()) {
    std::fprintf(stderr, "qrag-run: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
