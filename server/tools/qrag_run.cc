// qrag-run: offline generation with a real model on the CPU or CUDA backend, for first use and tests.
//
//   qrag-run --model PATH [--quant fp32|bf16|fp8|int8|w4] [--device cuda|cpu|auto] --prompt TEXT --max-tokens N
//            [--temperature T --top-p P --top-k K --min-p P --repetition-penalty R --seed S --stop STR]
//   qrag-run --model PATH --chat [--message TEXT] [--system TEXT] [--chat-template FILE] ...
//            (one chat turn with --message; without it, a conversation reading one message per line from stdin)
//
// Prints the completion (not the prompt) to stdout as it is generated, followed by a newline, and the
// speed to stderr. Exit status 0 on success, 2 for bad command-line usage, 1 for any other error.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/common/cli.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/chat/chat_format.h"
#include "server/engine/generator.h"
#include "server/engine/model_bundle.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
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
  return absl::OkStatus();
}

absl::Status Run(const RunFlags& args) {
  QRAG_ASSIGN_OR_RETURN(engine::ModelBundleOptions mo, tools::ModelBundleOptionsOf(args.model));
  mo.cpu.reference = args.reference;
  std::string prompt = args.prompt;
  if (!args.prompt_file.empty()) {
    QRAG_ASSIGN_OR_RETURN(prompt, ReadFileToString(args.prompt_file));
  }
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<engine::ModelBundle> bundle, engine::LoadModelBundle(mo));
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
  cli::ParseFlagsOrExit(*app, argc, argv, [&] { return ValidateRunFlags(&flags); });
  if (absl::Status s = Run(flags); !s.ok()) {
    std::fprintf(stderr, "qrag-run: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
