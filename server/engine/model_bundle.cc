#include "server/engine/model_bundle.h"

#include "server/common/status.h"

namespace qrag::engine {

absl::StatusOr<std::unique_ptr<ModelBundle>> LoadModelBundle(const ModelBundleOptions& options) {
  auto b = std::make_unique<ModelBundle>();
  // The device first: `--device cuda` on a machine without a GPU fails before any file is read.
  backend::BackendOptions bo;
  bo.device = options.device;
  bo.cpu = options.cpu;
  bo.cuda_device = options.cuda_device;
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<backend::Backend> device, backend::CreateBackend(bo));
  QRAG_ASSIGN_OR_RETURN(b->checkpoint, model::LoadCheckpoint(options.model_path));
  const int vocab = b->checkpoint.config.vocab_size;
  b->tokenizer_path = options.tokenizer_path;
  if (b->tokenizer_path.empty()) {
    QRAG_ASSIGN_OR_RETURN(b->tokenizer_path, model::FindTokenizerFor(options.model_path, vocab));
  }
  QRAG_ASSIGN_OR_RETURN(b->tokenizer, model::LoadTokenizer(b->tokenizer_path, vocab));
  b->backend = std::move(device);
  model::TransformerOptions to;
  to.precision = options.precision;
  to.classifier_precision = options.classifier_precision;
  QRAG_ASSIGN_OR_RETURN(b->transformer, model::Transformer::Create(b->checkpoint, b->backend.get(), to));
  return b;
}

}  // namespace qrag::engine
