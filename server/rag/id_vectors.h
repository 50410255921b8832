// Dense rows of float vectors addressed by a 64-bit id: the host copy every vector index keeps (to rebuild
// its backend weight or FAISS structure, and for exact scoring). Removal moves the last row into the hole,
// so rows stay contiguous ([size(), dim] row-major at data()) and row numbers of other ids may change.
//
// Not thread-safe: the owning index guards it with its own mutex.
#ifndef QRAG_SERVER_RAG_ID_VECTORS_H_
#define QRAG_SERVER_RAG_ID_VECTORS_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace qrag::rag {

class IdVectors {
 public:
  explicit IdVectors(int dim) : dim_(dim) {}

  int dim() const { return dim_; }
  size_t size() const { return ids_.size(); }
  bool empty() const { return ids_.empty(); }

  // Adds or overwrites the row of `id`. INVALID_ARGUMENT when vec.size() != dim().
  absl::Status Upsert(int64_t id, absl::Span<const float> vec);
  // False when `id` was not there.
  bool Remove(int64_t id);

  const float* data() const { return vectors_.data(); }
  const float* row(size_t r) const { return vectors_.data() + r * dim_; }
  int64_t id(size_t r) const { return ids_[r]; }
  // The row of `id`, or nullptr.
  const float* Find(int64_t id) const;

 private:
  const int dim_;
  std::vector<float> vectors_;                // [ids_.size(), dim]
  std::vector<int64_t> ids_;                  // row -> id
  absl::flat_hash_map<int64_t, size_t> rows_;  // id -> row
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_ID_VECTORS_H_
