#include "server/rag/rag_runtime.h"

#include "server/common/status.h"

namespace qrag::rag {

absl::StatusOr<std::unique_ptr<RagRuntime>> RagRuntime::Load(const RagRuntimeOptions& options) {
  auto r = std::make_unique<RagRuntime>();
  auto make = [&]() -> absl::StatusOr<std::unique_ptr<backend::Backend>> {
    if (options.make_backend) return options.make_backend();
    return std::make_unique<backend::CpuBackend>(
        backend::CpuBackendOptions{.num_threads = options.threads, .blas = true});
  };
  QRAG_ASSIGN_OR_RETURN(r->encoder_backend, make());
  QRAG_ASSIGN_OR_RETURN(r->index_backend, make());
  model::BertEncoderOptions eo;
  eo.precision = options.embedder_precision;
  QRAG_ASSIGN_OR_RETURN(r->encoder, model::BertEncoder::Load(options.embedder_dir, r->encoder_backend.get(), eo));
  QRAG_ASSIGN_OR_RETURN(r->collections,
                        Collections::Open(options.collections, r->encoder.get(), r->index_backend.get()));
  return r;
}

}  // namespace qrag::rag
