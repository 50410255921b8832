// qrag-run: offline generation with a real model on the CPU or CUDA backend, for first use and tests.
//
//   qrag-run --model PATH [--quant fp32|bf16|fp8|int8|w4] [--device cuda|cpu|auto] --prompt TEXT --max-tokens N
//            [--temperature T --top-p P --top-k K --min-p P --repetition-penalty R --seed S --stop STR]
//
// Prints the completion (not the prompt) to stdout as it is generated, followed by a newline, and the
// speed to stderr. Exit status 0 on success, 2 for bad command-line usage, 1 for any other error.
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "server/common/cli.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/engine/generator.h"
#include "server/engine/model_bundle.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"

namespace qrag {
namespace {

constexpr char kUsage[] = R"(usage: qrag-run --model PATH [options]

Generates text offline with a llama2.c checkpoint (.bin) or a Hugging Face Llama/Mistral/Qwen2 directory.

  --model PATH             model file or directory (required)
  --tokenizer PATH         tokenizer file (default: found next to the model)
  --quant Q                fp32 | bf16 | fp8 | int8 | w4 (default fp32)
  --device D               cuda | cpu | auto (default auto: cuda when a GPU is present, else cpu)
  --prompt TEXT            prompt text (default: empty = start from BOS)
  --prompt-file PATH       read the prompt from a file instead
  --max-tokens N           tokens to generate (default 256)
  --temperature T          0 = greedy (default 1.0)
  --top-p P                nucleus sampling, (0, 1] (default 0.9)
  --top-k K                keep the K most likely tokens, 0 = off (default 0)
  --min-p P                drop tokens below P x the top probability (default 0)
  --repetition-penalty R   > 0, 1 = off (default 1)
  --seed S                 random seed (default: random)
  --stop STR               stop before STR (repeatable)
  --context N              context length to allocate (default: min(model's, 4096))
  --threads N              CPU threads (default: all)
  --reference              use the CPU backend's plain-loop reference kernels (slow; for checking; implies
                           --device cpu)
  --help                   this text
)";

struct Args {
  std::string model, tokenizer, prompt, prompt_file, quant = "fp32";
  backend::Device device = backend::Device::kAuto;
  int max_tokens = 256, context = 0, threads = 0;
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  bool reference = false;
};

constexpr char kProgram[] = "qrag-run";

[[noreturn]] void UsageError(const std::string& msg) { cli::UsageError(kProgram, msg); }

template <typename T>
T ParseNumber(const std::string& flag, const std::string& text) {
  return cli::ParseNumber<T>(kProgram, flag, text);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  a.sampling.temperature = 1.0f;
  a.sampling.top_p = 0.9f;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--reference") {
      a.reference = true;
      continue;
    }
    const std::string value = cli::FlagValue(kProgram, argc, argv, &i, &flag);
    if (flag == "--model") a.model = value;
    else if (flag == "--tokenizer") a.tokenizer = value;
    else if (flag == "--quant") a.quant = value;
    else if (flag == "--device") {
      absl::StatusOr<backend::Device> d = backend::ParseDevice(value);
      if (!d.ok()) UsageError(std::string(d.status().message()));
      a.device = *d;
    }
    else if (flag == "--prompt") a.prompt = value;
    else if (flag == "--prompt-file") a.prompt_file = value;
    else if (flag == "--max-tokens") a.max_tokens = ParseNumber<int>(flag, value);
    else if (flag == "--temperature") a.sampling.temperature = ParseNumber<float>(flag, value);
    else if (flag == "--top-p") a.sampling.top_p = ParseNumber<float>(flag, value);
    else if (flag == "--top-k") a.sampling.top_k = ParseNumber<int>(flag, value);
    else if (flag == "--min-p") a.sampling.min_p = ParseNumber<float>(flag, value);
    else if (flag == "--repetition-penalty") a.sampling.repetition_penalty = ParseNumber<float>(flag, value);
    else if (flag == "--seed") a.sampling.seed = ParseNumber<uint64_t>(flag, value);
    else if (flag == "--stop") a.stop.push_back(value);
    else if (flag == "--context") a.context = ParseNumber<int>(flag, value);
    else if (flag == "--threads") a.threads = ParseNumber<int>(flag, value);
    else UsageError(absl::StrCat("unknown option ", flag));
  }
  if (a.model.empty()) UsageError("--model PATH is required");
  if (!a.prompt.empty() && !a.prompt_file.empty()) UsageError("give --prompt or --prompt-file, not both");
  if (a.threads < 0) UsageError("--threads must be >= 0");
  if (a.reference) {
    if (a.device == backend::Device::kCuda) UsageError("--reference runs the CPU reference kernels: use --device cpu");
    a.device = backend::Device::kCpu;
  }
  return a;
}

absl::Status Run(const Args& args) {
  engine::ModelBundleOptions mo;
  mo.model_path = args.model;
  mo.tokenizer_path = args.tokenizer;
  QRAG_ASSIGN_OR_RETURN(mo.precision, backend::ParsePrecision(args.quant));
  mo.cpu.reference = args.reference;
  mo.cpu.num_threads = args.threads;
  mo.device = args.device;
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
  QRAG_ASSIGN_OR_RETURN(engine::GenerateResult result,
                        generator->Generate(request, [](std::string_view text) {
                          std::fwrite(text.data(), 1, text.size(), stdout);
                          std::fflush(stdout);
                        }));
  std::fputs("\n", stdout);
  std::fflush(stdout);

  const double gen = static_cast<double>(result.output_ids.size());
  std::fprintf(stderr,
               "qrag-run: %s on %s (%s), %s weights; prompt %zu tokens (%.1f tok/s), generated %zu tokens in "
               "%.3f s: %.2f tok/s, finish=%s, seed=%llu\n",
               args.model.c_str(), std::string(device.name()).c_str(), tokenizer_path.c_str(),
               backend::PrecisionName(precision), result.prompt_ids.size(),
               result.prefill_seconds > 0 ? result.prompt_ids.size() / result.prefill_seconds : 0.0,
               result.output_ids.size(), result.decode_seconds,
               result.decode_seconds > 0 ? gen / result.decode_seconds : 0.0,
               engine::FinishReasonName(result.finish_reason), static_cast<unsigned long long>(result.seed));
  return absl::OkStatus();
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) {
  qrag::Args args = qrag::ParseArgs(argc, argv);
  absl::Status s = qrag::Run(args);
  if (!s.ok()) {
    std::fprintf(stderr, "qrag-run: error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
