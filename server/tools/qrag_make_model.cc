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
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/model/checkpoint_writer.h"
#include "server/model/random_model.h"

namespace qrag {
namespace {

constexpr char kUsage[] =
    "usage: qrag-make-model --shape NAME --out PATH [--format llama2c|llama2c-v1|llama2c-v2|hf]\n"
    "                       [--dtype f32|f16|bf16] [--shards N] [--seed S] [--context N]\n"
    "shapes: stories260K, stories15M, stories110M, tiny-gqa, llama-3.2-1b, llama-3-8b, qwen2-0.5b\n";

absl::Status Run(int argc, char** argv) {
  std::string shape, out, format = "llama2c", dtype = "f32";
  int shards = 1, context = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") {
      std::fputs(kUsage, stdout);
      return absl::OkStatus();
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    std::string value = argv[++i];
    bool ok = true;
    if (flag == "--shape") shape = value;
    else if (flag == "--out") out = value;
    else if (flag == "--format") format = value;
    else if (flag == "--dtype") dtype = value;
    else if (flag == "--shards") ok = absl::SimpleAtoi(value, &shards);
    else if (flag == "--seed") ok = absl::SimpleAtoi(value, &seed);
    else if (flag == "--context") ok = absl::SimpleAtoi(value, &context);
    else return absl::InvalidArgumentError(absl::StrCat("unknown option ", flag));
    if (!ok) return absl::InvalidArgumentError(absl::StrCat(flag, ": '", value, "' is not a number"));
  }
  if (shape.empty() || out.empty()) return absl::InvalidArgumentError("--shape and --out are required");
  QRAG_ASSIGN_OR_RETURN(model::ModelConfig config, model::NamedModelShape(shape));
  if (context > 0) config.max_seq_len = context;
  QRAG_ASSIGN_OR_RETURN(model::LoadedModel m, model::MakeRandomModel(config, seed));
  if (format == "hf") {
    model::HfWriteOptions o;
    o.shards = shards;
    if (dtype == "f32") o.dtype = model::HostDType::kF32;
    else if (dtype == "f16") o.dtype = model::HostDType::kF16;
    else if (dtype == "bf16") o.dtype = model::HostDType::kBF16;
    else return absl::InvalidArgumentError(absl::StrCat("--dtype ", dtype, ": use f32, f16 or bf16"));
    std::error_code ec;
    std::filesystem::create_directories(out, ec);
    if (ec) return absl::InternalError(absl::StrCat(out, ": cannot create directory: ", ec.message()));
    return model::WriteHfCheckpoint(m, out, o);
  }
  model::Llama2cWriteOptions o;
  if (format == "llama2c") o.version = 0;
  else if (format == "llama2c-v1") o.version = 1;
  else if (format == "llama2c-v2") o.version = 2;
  else return absl::InvalidArgumentError(absl::StrCat("--format ", format, ": use llama2c, llama2c-v1, llama2c-v2 or hf"));
  return model::WriteLlama2cCheckpoint(m, out, o);
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) {
  absl::Status s = qrag::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "qrag-make-model: %s\n%s", s.ToString().c_str(), qrag::kUsage);
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
