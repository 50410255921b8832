// The vector index a RAG collection searches: the interface every kind implements (ExactIndex: GEMM +
// top-k on a Backend; FaissIndex: HNSW or IVF on the CPU), and the factory that builds the one an
// IndexSpec names.
//
// Vectors are added and removed by id (a chunk's row id in the store); scores are inner products (= cosine
// for the L2-normalized embeddings). Implementations are thread-safe: every method may be called from any
// thread (they serialize on an internal mutex).
#ifndef QRAG_SERVER_RAG_VECTOR_INDEX_H_
#define QRAG_SERVER_RAG_VECTOR_INDEX_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/backend/backend.h"
#include "server/rag/index_spec.h"

namespace qrag::rag {

struct SearchHit {
  int64_t id = 0;
  float score = 0;  // inner product (= cosine for normalized vectors)
};

// Best first: higher score, ties broken by the smaller id.
inline bool BetterHit(const SearchHit& a, const SearchHit& b) {
  return a.score != b.score ? a.score > b.score : a.id < b.id;
}

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;

  virtual int dim() const = 0;
  virtual int64_t size() const = 0;  // vectors held

  // Adds or replaces the vector of `id`. INVALID_ARGUMENT when vec.size() != dim().
  virtual absl::Status Upsert(int64_t id, absl::Span<const float> vec) = 0;
  // Removes `id`; a no-op for an unknown id.
  virtual void Remove(int64_t id) = 0;
  // Brings the search structure up to date with the changes so far (uploads the backend weight, inserts
  // into or rebuilds a FAISS structure); Search does it first when needed. Call it after a bulk load so that
  // the first search does not pay for it.
  virtual absl::Status Prepare() = 0;

  // The `k` best hits of each of the `num_queries` queries (row-major [num_queries, dim]), best first
  // (BetterHit). `keep` (optional) filters candidates by id: each query then gets min(k, vectors kept)
  // hits. Approximate indexes may miss some of the true best, never return fewer than that count.
  virtual absl::StatusOr<std::vector<std::vector<SearchHit>>> Search(
      const float* queries, int num_queries, int k, const std::function<bool(int64_t)>& keep = nullptr) = 0;

  // What serves searches now, for ListCollections: "exact fp32", "hnsw: 12000 vectors (40 deleted, not yet
  // compacted)", "ivf: exact search until 128 vectors (holds 12)", ...
  virtual std::string Describe() const = 0;
};

// Builds an empty index of `spec` (resolved: ResolveIndexSpec) for `dim`-dimensional vectors. `exact_precision`
// and `backend` serve kExact (the backend must outlive the index and be used by nothing else while it
// searches); FAISS kinds run on the CPU and ignore them.
absl::StatusOr<std::unique_ptr<VectorIndex>> CreateVectorIndex(const IndexSpec& spec, int dim,
                                                               backend::Precision exact_precision,
                                                               backend::Backend* backend);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_VECTOR_INDEX_H_
