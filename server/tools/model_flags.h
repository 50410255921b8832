// The flags qrag-run and qrag-server share: the model to load, its precision and where it runs
// (server/common/cli.h has the conventions).
#ifndef QRAG_SERVER_TOOLS_MODEL_FLAGS_H_
#define QRAG_SERVER_TOOLS_MODEL_FLAGS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/backend/precision.h"
#include "server/backend/registry.h"
#include "server/common/cli.h"
#include "server/common/status.h"
#include "server/engine/model_bundle.h"
#include "server/quant/w4.h"

namespace qrag::tools {

struct ModelFlags {
  std::string model;           // required
  std::string tokenizer;       // empty: found next to the model
  std::string chat_template;   // empty: the model's own (chat/chat_format.h FindChatTemplate)
  std::string quant = "fp32";  // checked when the model loads (an unknown precision is a load error, exit 1)
  std::string w4_grid = "asymmetric";  // --quant w4's grid (quant/w4.h), checked like --quant
  std::string classifier_quant;        // empty: model::DefaultClassifierPrecision(--quant)
  backend::Device device = backend::Device::kAuto;
  int threads = 0;  // 0: all
};

inline void AddModelFlags(CLI::App& app, ModelFlags* f) {
  app.add_option("--model", f->model,
                 "llama2.c checkpoint (.bin), GGUF file (.gguf) or Hugging Face directory (required)")
      ->type_name("PATH");
  app.add_option("--tokenizer", f->tokenizer, "tokenizer file (default: found next to the model)")->type_name("PATH");
  app.add_option("--chat-template", f->chat_template,
                 "Jinja chat template file, overriding the model's own (GGUF metadata, tokenizer_config.json)")
      ->type_name("FILE");
  app.add_option("--quant", f->quant, "weight and GEMM precision (w4: CPU backend only)")
      ->type_name("{fp32,bf16,fp8,int8,w4}");
  app.add_option("--w4-grid", f->w4_grid,
                 "--quant w4: 4-bit grid per 32 weights (asymmetric: scale + minimum, llama.cpp's Q4_1 grid; "
                 "symmetric: INT4 with an OCTAV-clipped scale)")
      ->type_name("{asymmetric,symmetric}")
      ->default_str(f->w4_grid);
  app.add_option("--classifier-quant", f->classifier_quant,
                 "precision of the classifier (vocabulary projection) GEMM (default: as --quant, but int8 for w4)")
      ->type_name("{fp32,bf16,fp8,int8,w4}");
  cli::AddParsed<backend::Device>(app, "--device", &f->device, backend::ParseDevice,
                                  "where the model runs (auto: cuda when a GPU is present, else cpu)")
      ->type_name("{cuda,cpu,auto}")
      ->default_str(backend::DeviceName(f->device));
  cli::AddNumber(app, "--threads", &f->threads, "CPU threads (0: all)");
}

inline absl::Status ValidateModelFlags(const ModelFlags& f) {
  if (f.model.empty()) return absl::InvalidArgumentError("--model PATH is required");
  if (f.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  return absl::OkStatus();
}

// INVALID_ARGUMENT for an unknown --quant.
inline absl::StatusOr<engine::ModelBundleOptions> ModelBundleOptionsOf(const ModelFlags& f) {
  engine::ModelBundleOptions o;
  o.model_path = f.model;
  o.tokenizer_path = f.tokenizer;
  QRAG_ASSIGN_OR_RETURN(o.precision, backend::ParsePrecision(f.quant));
  QRAG_ASSIGN_OR_RETURN(o.cpu.w4.grid, quant::ParseW4Grid(f.w4_grid));
  if (!f.classifier_quant.empty()) {
    QRAG_ASSIGN_OR_RETURN(o.classifier_precision, backend::ParsePrecision(f.classifier_quant));
  }
  o.cpu.num_threads = f.threads;
  o.device = f.device;
  return o;
}

}  // namespace qrag::tools

#endif  // QRAG_SERVER_TOOLS_MODEL_FLAGS_H_
