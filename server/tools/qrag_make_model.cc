// qrag-make-model: writes a random-weight model of a named real shape in any checkpoint format qrag loads.
// For benchmarks and tests of models whose real weights are not at hand (the work done per token does not
// depend on the weights' values).
//
//   qrag-make-model --shape NAME --out PATH [--format llama2c|llama2c-v1|llama2c-v2|hf] [--dtype f32|f16|bf16]
//                   [--shards N] [--seed S] [--context N]
//
// llama2c formats write one .bin file at PATH; hf writes config.json + safetensors into directory PATH
// (created). Tokenizer files are not written: pair the model with a tokenizer of the same vocabulary size.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/cli.h"
#include "server/common/status.h"
#include "server/model/checkpoint_writer.h"
#include "server/model/random_model.h"

namespace qrag {
namespace {

constexpr char kProgram[] = "qrag-make-model";
constexpr int kHf = -1;  // MakeModelFlags::format: a Hugging Face directory (else the llama2.c version)

struct MakeModelFlags {
  std::string shape, out;
  int format = 0;
  model::HostDType dtype = model::HostDType::kF32;
  int shards = 1;
  uint64_t seed = 1;
  int context = 0;  // 0: the shape's
};

void AddMakeModelFlags(CLI::App& app, MakeModelFlags* f) {
  app.add_option("--shape", f->shape,
                 "stories260K, stories15M, stories110M, tiny-gqa, llama-3.2-1b, llama-3-8b or qwen2-0.5b (required)")
      ->type_name("NAME");
  app.add_option("--out", f->out, "the .bin file (llama2c formats) or the directory (hf, created) (required)")
      ->type_name("PATH");
  cli::AddChoice<int>(app, "--format", &f->format, {{"llama2c", 0}, {"llama2c-v1", 1}, {"llama2c-v2", 2}, {"hf", kHf}},
                      "checkpoint format");
  cli::AddChoice<model::HostDType>(
      app, "--dtype", &f->dtype,
      {{"f32", model::HostDType::kF32}, {"f16", model::HostDType::kF16}, {"bf16", model::HostDType::kBF16}},
      "tensor type of --format hf");
  cli::AddNumber(app, "--shards", &f->shards, "safetensors files of --format hf");
  cli::AddNumber(app, "--seed", &f->seed, "random seed of the weights");
  cli::AddNumber(app, "--context", &f->context, "the model's context length (0: the shape's)");
}

absl::Status ValidateMakeModelFlags(const MakeModelFlags& f) {
  if (f.shape.empty() || f.out.empty()) return absl::InvalidArgumentError("--shape and --out are required");
  return absl::OkStatus();
}

absl::Status Run(const MakeModelFlags& f) {
  QRAG_ASSIGN_OR_RETURN(model::ModelConfig config, model::NamedModelShape(f.shape));
  if (f.context > 0) config.max_seq_len = f.context;
  QRAG_ASSIGN_OR_RETURN(model::LoadedModel m, model::MakeRandomModel(config, f.seed));
  if (f.format == kHf) {
    model::HfWriteOptions o;
    o.shards = f.shards;
    o.dtype = f.dtype;
    std::error_code ec;
    std::filesystem::create_directories(f.out, ec);
    if (ec) return absl::InternalError(absl::StrCat(f.out, ": cannot create directory: ", ec.message()));
    return model::WriteHfCheckpoint(m, f.out, o);
  }
  model::Llama2cWriteOptions o;
  o.version = f.format;
  return model::WriteLlama2cCheckpoint(m, f.out, o);
}

int Main(int argc, char** argv) {
  std::unique_ptr<CLI::App> app = cli::NewApp(
      kProgram, "Writes a random-weight model of a named real shape in a checkpoint format qrag loads (no "
                "tokenizer: pair it with one of the same vocabulary size).");
  MakeModelFlags flags;
  AddMakeModelFlags(*app, &flags);
  cli::ParseFlagsOrExit(*app, argc, argv, [&] { return ValidateMakeModelFlags(flags); });
  absl::Status s = Run(flags);
  // A shape or format that cannot be written is bad usage too.
  if (s.code() == absl::StatusCode::kInvalidArgument) cli::UsageError(kProgram, s.ToString());
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
