// Which vector index a RAG collection searches with, and its parameters: chosen at CreateCollection,
// persisted with the collection (DocumentStore, as JSON) and shown by ListCollections.
//
//   exact  the corpus matrix times the query batch as one GEMM on the index backend (fp32 or int8, the
//          server's --index-quant), then top-k: every result is the true nearest neighbour.
//   hnsw   FAISS IndexHNSWFlat, inner product on the L2-normalized embeddings (= cosine): approximate,
//          sub-linear search for large collections on the CPU. m, ef_construction, ef_search.
//   ivf    FAISS IndexIVFFlat, inner product: k-means into nlist lists, nprobe of them scanned per query.
//          Trained on the collection's own embeddings once it holds at least nlist of them (exact search
//          until then).
//   auto   exact while the collection holds fewer than auto_threshold chunks, HNSW (with the hnsw_*
//          parameters) from then on.
//
// Values of 0 in a request mean "the default"; Resolve() fills them in, so a stored spec is always
// complete. Parameters of another kind than the chosen one are INVALID_ARGUMENT (they would be ignored).
#ifndef QRAG_SERVER_RAG_INDEX_SPEC_H_
#define QRAG_SERVER_RAG_INDEX_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qrag::rag {

enum class IndexKind { kExact, kHnsw, kIvf, kAuto };

struct IndexSpec {
  IndexKind kind = IndexKind::kExact;
  int hnsw_m = 0;                // links per node (2*m on level 0); 0 -> kDefaultHnswM
  int hnsw_ef_construction = 0;  // candidate list while inserting; 0 -> kDefaultHnswEfConstruction
  int hnsw_ef_search = 0;        // candidate list while searching (raised to k when smaller); 0 -> default
  int ivf_nlist = 0;             // k-means lists; 0 -> kDefaultIvfNlist
  int ivf_nprobe = 0;            // lists scanned per query; 0 -> kDefaultIvfNprobe (at most nlist)
  int64_t auto_threshold = 0;    // auto: HNSW from this many chunks on; 0 -> kDefaultAutoThreshold

  bool operator==(const IndexSpec&) const = default;
};

inline constexpr int kDefaultHnswM = 32;
inline constexpr int kDefaultHnswEfConstruction = 128;
inline constexpr int kDefaultHnswEfSearch = 128;
inline constexpr int kDefaultIvfNlist = 128;
inline constexpr int kDefaultIvfNprobe = 16;
inline constexpr int64_t kDefaultAutoThreshold = 20000;

// "exact", "hnsw", "ivf", "auto".
const char* IndexKindName(IndexKind kind);
// INVALID_ARGUMENT naming the accepted values for anything else.
absl::StatusOr<IndexKind> ParseIndexKind(const std::string& name);

// Checks `spec` (ranges; parameters given only for the kinds that use them) and fills the defaults.
// INVALID_ARGUMENT with a message naming the field and its range.
absl::StatusOr<IndexSpec> ResolveIndexSpec(const IndexSpec& spec);

// The stored form: a JSON object {"kind": "hnsw", "hnsw_m": 32, ...} with the fields of its kind.
std::string IndexSpecToJson(const IndexSpec& spec);
// DATA_LOSS for a malformed stored spec; an empty string is "exact" (collections made before index choice).
absl::StatusOr<IndexSpec> IndexSpecFromJson(const std::string& json);

// One line for people: "hnsw m=32 ef_construction=128 ef_search=128".
std::string IndexSpecToString(const IndexSpec& spec);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_INDEX_SPEC_H_
