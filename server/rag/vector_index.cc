#include "server/rag/vector_index.h"

#include "server/common/status.h"
#include "server/rag/exact_index.h"
#include "server/rag/faiss_index.h"

namespace qrag::rag {

absl::StatusOr<std::unique_ptr<VectorIndex>> CreateVectorIndex(const IndexSpec& spec, int dim,
                                                               backend::Precision exact_precision,
                                                               backend::Backend* backend) {
  if (spec.kind == IndexKind::kExact) {
    QRAG_ASSIGN_OR_RETURN(std::unique_ptr<ExactIndex> exact, ExactIndex::Create(dim, exact_precision, backend));
    return std::unique_ptr<VectorIndex>(std::move(exact));
  }
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<FaissIndex> faiss, FaissIndex::Create(dim, spec));
  return std::unique_ptr<VectorIndex>(std::move(faiss));
}

}  // namespace qrag::rag
