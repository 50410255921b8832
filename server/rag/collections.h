// RAG collections: the durable DocumentStore, one in-memory vector index per collection (rebuilt from the
// store at start), and the encoder that embeds documents and queries. What the Retrieval gRPC service and
// Generate's `rag` option call. Each collection chose its index kind at creation (IndexSpec: exact GEMM, FAISS
// HNSW or IVF, or auto), persisted with it.
//
// Consistency: a document is acknowledged only after the store committed it; the index is updated after
// the commit (a search running meanwhile sees the old or the new chunks of a document, never a half). On
// start every collection's index is rebuilt from the store (and its FAISS structure built, before the server
// serves), so the index never holds what the store lost and never lacks what it kept. FAISS indexes insert an
// ingest's vectors before the ingest returns; the exact index uploads its matrix at the next search.
//
// Several replicas (a shared PostgreSQL store): each keeps its own indexes; a follower thread reads the store's
// change log (woken by NOTIFY, polling at least every kFollowPollMs) and re-reads each changed document, so a
// replica converges on what the store holds whichever replica wrote it; index_lag_seconds() bounds how far
// behind it may be. Changes are applied in commit order and are idempotent, so catching up after a lost
// connection (or at start, from the sequence number read before loading) re-applies nothing wrongly.
//
// Embedder identity: a collection records the encoder's model_id() and precision at creation; ingest and
// retrieval on a collection made with another embedder are FAILED_PRECONDITION (its vectors would not be
// comparable), naming both.
//
// Thread safety: every method may be called from any thread, concurrently. Encoding and searching run on the
// caller's thread (a gRPC server thread), never on the engine thread.
#ifndef QRAG_SERVER_RAG_COLLECTIONS_H_
#define QRAG_SERVER_RAG_COLLECTIONS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/backend/backend.h"
#include "server/model/bert_encoder.h"
#include "server/rag/rag_observer.h"
#include "server/rag/chunker.h"
#include "server/rag/document_store.h"
#include "server/rag/index_spec.h"
#include "server/rag/vector_index.h"

namespace qrag::rag {

// Passages a query returns when its top_k is 0 (Retrieve and Generate's rag option alike).
inline constexpr int kDefaultTopK = 5;

struct CollectionsOptions {
  std::string data_dir;                                           // holds rag.sqlite
  // The shared PostgreSQL store instead (a libpq URL or "key=value" string; postgres_store.h); empty: SQLite
  // in data_dir.
  std::string store;
  backend::Precision index_precision = backend::Precision::kF32;  // of exact indexes: kF32 or kInt8
  int64_t max_document_bytes = 8 << 20;                           // larger documents: INVALID_ARGUMENT
  int max_top_k = 1000;  // Retrieve's and Generate's rag top_k (0 -> kDefaultTopK)
  int64_t max_store_bytes = 0;  // > 0: cap on rag.sqlite; ingests past it are RESOURCE_EXHAUSTED
  // Hears each Retrieve's embed and search times (qrag_rag_embed_seconds / qrag_rag_search_seconds); not
  // owned, must outlive the Collections; null: no metrics.
  RagObserver* observer = nullptr;
};

struct DocumentInput {
  std::string id;
  std::string text;
  Metadata metadata;
};

// How Retrieve ranks (RetrieveRequest.mode / RagOptions.mode):
//   kDense:  the cosine similarity of the embeddings (the collection's vector index);
//   kBm25:   BM25 over the chunks' words (the store's FTS5 keyword index);
//   kHybrid: reciprocal rank fusion of the two: each chunk scores sum(1 / (kRrfK + rank)) over the dense and
//            the BM25 rankings of their best max(kFusionDepth, n) candidates (a missing rank adds 0); ties
//            by cosine, then chunk id.
// In every mode `score` is the cosine and min_score applies to it.
enum class SearchMode { kDense, kBm25, kHybrid };
inline constexpr int kRrfK = 60;
inline constexpr int kFusionDepth = 100;
// "dense", "bm25", "hybrid".
const char* SearchModeName(SearchMode mode);

struct RetrieveOptions {
  SearchMode mode = SearchMode::kHybrid;
  // At most one chunk per document (its best-ranked), so top_k counts documents.
  bool group_by_document = false;
};

struct RetrievedChunk {
  ChunkRecord chunk;
  float score = 0;  // cosine similarity with the query
  float bm25 = 0;   // BM25 of the chunk's words for the query (0: none matched, or not searched: dense mode)
  float fused = 0;  // hybrid: the reciprocal-rank-fusion score that ordered the results
};

struct RetrieveTimings {
  double embed_seconds = 0;
  double search_seconds = 0;
};

struct IngestResult {
  int64_t documents = 0;  // upserted
  int64_t chunks = 0;     // chunks written for them
  int64_t replaced = 0;   // documents that already existed (upsert)
  int64_t tokens = 0;     // WordPiece tokens encoded for the chunks ([CLS] and [SEP] included)
};

class Collections {
 public:
  ~Collections();
  // Opens (creating) `options.data_dir`/rag.sqlite, or the PostgreSQL store `options.store`, and rebuilds every
  // collection's index. `encoder` and
  // `index_backend` must outlive this object; the index backend must not be used by anything else.
  static absl::StatusOr<std::unique_ptr<Collections>> Open(const CollectionsOptions& options,
                                                           model::BertEncoder* encoder,
                                                           backend::Backend* index_backend);

  model::BertEncoder& encoder() { return *encoder_; }
  // Where the collections are stored: the SQLite file or the PostgreSQL database (no password).
  const std::string& store_description() const { return store_->path(); }
  // Collections whose keyword (BM25) index was built at Open: their database predates hybrid search.
  const std::vector<std::string>& keyword_indexes_built() const { return store_->keyword_indexes_built(); }

  // INVALID_ARGUMENT for a bad name (1..128 of [A-Za-z0-9_.-]) or chunking; ALREADY_EXISTS;
  // FAILED_PRECONDITION when `embedder` is set and is neither the server's model_id() nor its directory name;
  // INVALID_ARGUMENT for a bad `index` (ResolveIndexSpec; the returned info holds it resolved).
  absl::StatusOr<CollectionInfo> Create(const std::string& name, const std::string& embedder,
                                        const ChunkingOptions& chunking, const IndexSpec& index = {});
  // Every collection, with index_status saying what serves its searches now.
  absl::StatusOr<std::vector<CollectionInfo>> List();
  absl::Status Drop(const std::string& name);

  // Validates every document first (non-empty unique ids of at most 512 bytes, non-empty text with at least
  // one token, at most max_document_bytes, valid UTF-8: INVALID_ARGUMENT naming the document), then
  // chunks, embeds and stores them in one transaction. NOT_FOUND for an unknown collection.
  absl::StatusOr<IngestResult> Ingest(const std::string& collection, const std::vector<DocumentInput>& docs);
  absl::StatusOr<int64_t> Delete(const std::string& collection, const std::vector<std::string>& ids);

  // The query rules of Retrieve and of Generate's rag option, in this one place: top_k 0 means
  // kDefaultTopK, else it must be in [1, max_top_k]; min_score must be a finite cosine in [-1, 1]. Returns
  // the top_k to use; INVALID_ARGUMENT naming `field_prefix` + the field ("rag.top_k") otherwise.
  absl::StatusOr<int> CheckQuery(int top_k, float min_score, std::string_view field_prefix) const;

  // The top_k chunks for `query` with a cosine >= min_score, best first by `how.mode` (CheckQuery's rules);
  // `filter` keeps documents whose metadata holds every key = value of it. INVALID_ARGUMENT for an empty
  // query.
  absl::StatusOr<std::vector<RetrievedChunk>> Retrieve(const std::string& collection, const std::string& query,
                                                       int top_k, float min_score, const Metadata& filter,
                                                       RetrieveTimings* timings, const RetrieveOptions& how = {});

  // With a shared store (PostgreSQL): an upper bound, in seconds, of how far this replica's indexes may be
  // behind what the store committed: the time since a poll of its change log began that found every change
  // applied (polls run on every NOTIFY and at least every kFollowPollMs). 0 for an unshared store.
  double index_lag_seconds() const;
  static constexpr int kFollowPollMs = 500;

  // Embeddings of texts [n, dim], for the Embed RPC and /v1/embeddings; `tokens`: the tokens encoded.
  absl::StatusOr<std::vector<float>> Embed(const std::vector<std::string>& texts, int64_t* tokens = nullptr);

 private:
  struct Entry {
    CollectionInfo info;
    std::unique_ptr<VectorIndex> index;
    absl::Mutex mu;
    std::map<int64_t, std::string> chunk_docs ABSL_GUARDED_BY(mu);  // chunk id -> document id (filters)
    std::map<std::string, std::vector<int64_t>> doc_chunks ABSL_GUARDED_BY(mu);  // and back
  };
  Collections() = default;
  absl::StatusOr<std::shared_ptr<Entry>> Find(const std::string& name, bool check_embedder);
  absl::Status CheckEmbedder(const CollectionInfo& info) const;
  absl::StatusOr<std::unique_ptr<VectorIndex>> MakeIndex(const CollectionInfo& info) const;
  // A collection's entry with its index built from the store's chunks.
  absl::StatusOr<std::shared_ptr<Entry>> LoadEntry(const CollectionInfo& info);

  // The follower of a shared store (its own thread): applies the changes other replicas commit.
  void Follow();
  absl::Status ApplyChange(const DocumentStore::Change& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  std::thread follower_;
  std::atomic<bool> stop_{false};
  int64_t applied_seq_ = 0;                 // the follower's: every change up to it is applied
  std::atomic<double> caught_up_at_{0};     // unix time when a poll that found nothing newer began

  CollectionsOptions options_;
  model::BertEncoder* encoder_ = nullptr;
  backend::Backend* index_backend_ = nullptr;
  std::unique_ptr<DocumentStore> store_;
  absl::Mutex mu_;  // guards the map; each Entry's index has its own lock
  std::map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::Mutex search_mu_;  // the index backend runs one search at a time
  absl::Mutex write_mu_;  // serializes ingest/delete/drop so the index follows the store's commit order
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_COLLECTIONS_H_
