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
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"

namespace qrag::rag {

struct SearchHit {
  int64_t id = 0;
  float score = 0;  // inner product (= cosine for normalized vectors)
};

class ExactIndex {
 public:
  // `precision`: kF32 or kInt8 (INVALID_ARGUMENT from Create otherwise).
  static absl::StatusOr<std::unique_ptr<ExactIndex>> Create(int dim, backend::Precision precision,
                                                            backend::Backend* backend);

  int dim() const { return dim_; }
  backend::Precision precision() const { return precision_; }
  int64_t size() const;

  // Adds or replaces the vector of `id`. INVALID_ARGUMENT when vec.size() != dim().
  absl::Status Upsert(int64_t id, absl::Span<const float> vec);
  void Remove(int64_t id);

  // The `k` best hits of each of the `num_queries` queries (row-major [num_queries, dim]), best first; ties
  // broken by the smaller id. `keep` (optional) filters candidates by id before the top-k.
  absl::StatusOr<std::vector<std::vector<SearchHit>>> Search(const float* queries, int num_queries, int k,
                                                             const std::function<bool(int64_t)>& keep = nullptr);

 private:
  ExactIndex(int dim, backend::Precision precision, backend::Backend* backend)
      : dim_(dim), precision_(precision), backend_(backend) {}
  absl::Status RebuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int dim_;
  const backend::Precision precision_;
  backend::Backend* const backend_;
  mutable absl::Mutex mu_;
  std::vector<float> vectors_ ABSL_GUARDED_BY(mu_);  // [ids_.size(), dim] host copy
  std::vector<int64_t> ids_ ABSL_GUARDED_BY(mu_);    // row -> id
  absl::flat_hash_map<int64_t, size_t> rows_ ABSL_GUARDED_BY(mu_);  // id -> row
  backend::Weight weight_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_EXACT_INDEX_H_
