// Exact (brute-force) nearest-neighbour search by inner product, run as one GEMM of the query batch against
// the corpus embeddings on a Backend, then a per-query top-k.
//
// Vectors are added and removed by id (a chunk's row id in the store). fp32 scores every vector exactly;
// int8 stores the corpus as int8 with one scale per vector and quantizes each query per row (the backend's
// W8A8 GEMM, int32 accumulation), a quarter of the memory. The backend Weight is rebuilt lazily on the first
// search after a change.
//
// Thread safety: all methods may be called from any thread; they serialize on an internal mutex (the
// backend is used by one thread at a time, so give the index its own Backend).
#ifndef QRAG_SERVER_RAG_EXACT_INDEX_H_
#define QRAG_SERVER_RAG_EXACT_INDEX_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"
#include "server/rag/id_vectors.h"
#include "server/rag/vector_index.h"

namespace qrag::rag {

class ExactIndex : public VectorIndex {
 public:
  // `precision`: kF32 or kInt8 (INVALID_ARGUMENT from Create otherwise).
  static absl::StatusOr<std::unique_ptr<ExactIndex>> Create(int dim, backend::Precision precision,
                                                            backend::Backend* backend);

  int dim() const override { return dim_; }
  backend::Precision precision() const { return precision_; }
  int64_t size() const override;

  absl::Status Upsert(int64_t id, absl::Span<const float> vec) override;
  void Remove(int64_t id) override;
  absl::Status Prepare() override;
  absl::StatusOr<std::vector<std::vector<SearchHit>>> Search(
      const float* queries, int num_queries, int k, const std::function<bool(int64_t)>& keep = nullptr) override;
  std::string Describe() const override;

 private:
  ExactIndex(int dim, backend::Precision precision, backend::Backend* backend)
      : dim_(dim), precision_(precision), backend_(backend), vectors_(dim) {}
  absl::Status RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int dim_;
  const backend::Precision precision_;
  backend::Backend* const backend_;
  mutable absl::Mutex mu_;
  IdVectors vectors_ ABSL_GUARDED_BY(mu_);  // host copy
  backend::Weight weight_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_EXACT_INDEX_H_
