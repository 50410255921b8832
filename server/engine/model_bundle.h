// Loading a servable model in one step: checkpoint -> tokenizer (given, or found next to it) -> backend ->
// Transformer in the requested precision, on the requested device (backend/registry.h). qrag-run and
// qrag-server both start this way.
#ifndef QRAG_SERVER_ENGINE_MODEL_BUNDLE_H_
#define QRAG_SERVER_ENGINE_MODEL_BUNDLE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/precision.h"
#include "server/backend/registry.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"

namespace qrag::engine {

struct ModelBundleOptions {
  std::string model_path;      // llama2.c .bin or Hugging Face directory
  std::string tokenizer_path;  // empty: model::FindTokenizerFor
  backend::Precision precision = backend::Precision::kF32;
  std::optional<backend::Precision> classifier_precision;  // unset: model::DefaultClassifierPrecision
  backend::CpuBackendOptions cpu;
  backend::Device device = backend::Device::kAuto;  // cuda when a GPU is present, else cpu
  int cuda_device = 0;
};

// Owns everything a loaded model needs; members are destroyed in reverse order (transformer before the
// backend that holds its memory). Not copyable or movable: the transformer points into the backend.
struct ModelBundle {
  model::LoadedModel checkpoint;  // kept: tensors may be views into its mapped files
  std::string tokenizer_path;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<model::Transformer> transformer;
};

// Errors are those of the loaders, the tokenizer search, backend::CreateBackend (FAILED_PRECONDITION for
// --device cuda without a usable GPU) and Transformer::Create, each naming the file or the device.
absl::StatusOr<std::unique_ptr<ModelBundle>> LoadModelBundle(const ModelBundleOptions& options);

}  // namespace qrag::engine

#endif  // QRAG_SERVER_ENGINE_MODEL_BUNDLE_H_
