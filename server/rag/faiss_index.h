// Approximate nearest-neighbour search on the CPU with FAISS (Debian's libfaiss): HNSW (IndexHNSWFlat) or
// IVF-flat (IndexIVFFlat), inner product on the L2-normalized embeddings, behind VectorIndex.
//
// Deletes and upserts: FAISS's HNSW cannot remove a vector, so every kind maps its own FAISS labels to ids
// and tombstones the label of a removed or replaced vector (a replaced vector gets a new label). Searches
// drop tombstoned labels and fetch enough extra candidates to still return k live hits. Tombstones are
// compacted when the structure is next brought up to date: IVF removes them from its lists
// (remove_ids); HNSW rebuilds its graph from the live vectors once more than a quarter of it is tombstoned.
//
// Metadata filters (`keep`): the index counts the vectors `keep` accepts. When they are few (at most an
// eighth of the index, or no more than k) it scores exactly those vectors (exact, cheap because they are
// few); otherwise it asks FAISS for k / (kept fraction) candidates and keeps the accepted ones, doubling the
// candidates (and IVF's nprobe) while a query has fewer than min(k, kept) hits, and scores the accepted
// vectors exactly when even the whole index did not yield them. A search therefore always returns
// min(k, kept) hits.
//
// When FAISS is not used yet: `auto` scores exactly (fp32, on the host copy) below auto_threshold vectors
// and builds the HNSW graph from then on (dropping it again below half the threshold); `ivf` scores exactly
// until the collection holds ivf_nlist vectors to train its k-means on, and retrains on all vectors once the
// collection has doubled since the last training.
//
// Changes are applied lazily: Upsert/Remove only record them; Prepare() (and every Search, first) inserts
// the new vectors, compacts, trains or rebuilds. Call Prepare() after a bulk load so that no search pays
// for the build.
//
// Thread safety: all methods may be called from any thread; they serialize on an internal mutex. FAISS
// itself parallelizes inserts and batched searches with OpenMP.
#ifndef QRAG_SERVER_RAG_FAISS_INDEX_H_
#define QRAG_SERVER_RAG_FAISS_INDEX_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "server/rag/id_vectors.h"
#include "server/rag/index_spec.h"
#include "server/rag/vector_index.h"

namespace faiss {
struct Index;
}  // namespace faiss

namespace qrag::rag {

class FaissIndex : public VectorIndex {
 public:
  // `spec`: a resolved (ResolveIndexSpec) hnsw, ivf or auto spec; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<FaissIndex>> Create(int dim, const IndexSpec& spec);
  ~FaissIndex() override;

  int dim() const override { return dim_; }
  const IndexSpec& spec() const { return spec_; }
  int64_t size() const override;

  absl::Status Upsert(int64_t id, absl::Span<const float> vec) override;
  void Remove(int64_t id) override;
  absl::Status Prepare() override;
  absl::StatusOr<std::vector<std::vector<SearchHit>>> Search(
      const float* queries, int num_queries, int k, const std::function<bool(int64_t)>& keep = nullptr) override;
  std::string Describe() const override;

  // True when searches go through FAISS now (false: exact scoring, see above). For tests and the bench.
  bool UsesFaiss() const;
  // Tombstoned labels still inside the FAISS structure (compacted by Prepare as described above).
  int64_t TombstonesForTest() const;

 private:
  FaissIndex(int dim, const IndexSpec& spec);  // in the .cc: faiss::Index is incomplete here

  absl::Status PrepareLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WantFaissLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the FAISS structure and its labels (searches score exactly until the next build).
  void DropStructureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BuildLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AddPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TombstoneLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FAISS search of `n` queries for `fetch` candidates each: labels [n, fetch], -1 where none.
  absl::Status FaissSearchLocked(const float* queries, int n, int64_t fetch, int nprobe, std::vector<float>* scores,
                                 std::vector<int64_t>* labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Exact top-k of `query` over `rows` (row numbers of vectors_), or over every row when null.
  std::vector<SearchHit> ExactTopKLocked(const float* query, int k, const std::vector<size_t>* rows) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int dim_;
  const IndexSpec spec_;
  mutable absl::Mutex mu_;
  IdVectors vectors_ ABSL_GUARDED_BY(mu_);  // every live vector (host copy)
  std::unique_ptr<faiss::Index> quantizer_ ABSL_GUARDED_BY(mu_);  // IVF's coarse quantizer (index_ uses it)
  std::unique_ptr<faiss::Index> index_ ABSL_GUARDED_BY(mu_);      // null: exact scoring
  std::vector<int64_t> label_ids_ ABSL_GUARDED_BY(mu_);  // FAISS label -> id, kTombstone when removed/replaced
  absl::flat_hash_map<int64_t, int64_t> id_labels_ ABSL_GUARDED_BY(mu_);  // live id -> its label
  std::vector<int64_t> pending_ ABSL_GUARDED_BY(mu_);  // ids upserted since the last Prepare (may repeat)
  std::vector<int64_t> dead_labels_ ABSL_GUARDED_BY(mu_);  // tombstoned labels still inside index_
  int64_t trained_on_ ABSL_GUARDED_BY(mu_) = 0;  // IVF: vectors of the last k-means
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_FAISS_INDEX_H_
