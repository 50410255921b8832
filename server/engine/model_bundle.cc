#include "server/engine/model_bundle.h"

#include "server/common/status.h"

namespace qrag::engine {

absl::StatusOr<std::unique_ptr<ModelBundle>> LoadModelBundle(const ModelBundleOptions& options) {
  auto b = std::make_unique<ModelBundle>();
  QRAG_ASSIGN_OR_RETURN(b->checkpoint, model::LoadCheckpoint(options.model_path));
  const int vocab = b->checkpoint.config.vocab_size;
  b->tokenizer_path = options.tokenizer_path;
  if (b->tokenizer_path.empty()) {
    QRAG_ASSIGN_OR_RETURN(b->tokenizer_path, model::FindTokenizerFor(options.model_path, vocab));
  }
  QRAG_ASSIGN_OR_RETURN(b->tokenizer, model::LoadTokenizer(b->tokenizer_path, vocab));
  b->backend = std::make_unique<backend::CpuBackend>(options.cpu);
  model::TransformerOptions to;
  to.precision = options.precision;
  QRAG_ASSIGN_OR_RETURN(b->transformer, model::Transformer::Create(b->checkpoint, b->backend.get(), to));
  return b;
}

}  // namespace qrag::engine
