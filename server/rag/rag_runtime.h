// Everything the RAG stage needs at run time, built from the server's flags: the encoder on its own backend,
// the index backend (the exact index's GEMM runs there), and the collections opened (indexes rebuilt) from the
// data directory. The backends come from `make_backend` (qrag-server: the device --embedder-device picks, as
// the generator's does); without it, CPU backends.
#ifndef QRAG_SERVER_RAG_RAG_RUNTIME_H_
#define QRAG_SERVER_RAG_RAG_RUNTIME_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/model/bert_encoder.h"
#include "server/rag/collections.h"

namespace qrag::rag {

struct RagRuntimeOptions {
  std::string embedder_dir;                                          // sentence-transformers BERT directory
  backend::Precision embedder_precision = backend::Precision::kF32;  // fp32 | bf16 | fp8 | int8
  int threads = 0;                                                   // encoder CPU threads (0: all)
  CollectionsOptions collections;                                    // data_dir, index precision, limits
  // Makes one backend (called twice: encoder, index); null: CpuBackend with `threads` and OpenBLAS fp32 GEMMs
  // (embeddings need no batch invariance).
  std::function<absl::StatusOr<std::unique_ptr<backend::Backend>>()> make_backend;
};

struct RagRuntime {
  std::unique_ptr<backend::Backend> encoder_backend;
  std::unique_ptr<backend::Backend> index_backend;
  std::unique_ptr<model::BertEncoder> encoder;
  std::unique_ptr<Collections> collections;

  // Errors name the directory or file (encoder load errors, store open errors).
  static absl::StatusOr<std::unique_ptr<RagRuntime>> Load(const RagRuntimeOptions& options);
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_RAG_RUNTIME_H_
