// The durable store of RAG collections: one SQLite database (WAL journal, synchronous=FULL, foreign keys)
// holding collections, documents (text + metadata), their chunks with the embeddings, and per collection an
// FTS5 keyword index of the chunks (table "fts:<collection>", external content = the chunks table).
//
// Durability contract: every mutating call is one transaction, and returns OK only after SQLite committed
// it with synchronous=FULL (the WAL is fsynced at commit), so whatever a caller acknowledged survives a
// crash or kill -9 of the process (and a power loss on disks that honour fsync). A failed call leaves the
// store as it was (the transaction is rolled back). Errors: a full disk (SQLITE_FULL) is RESOURCE_EXHAUSTED;
// a read-only file or directory (SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM) is FAILED_PRECONDITION;
// other SQLite errors are INTERNAL; each message names the database file and SQLite's own message.
//
// Thread safety: all methods may be called from any thread (one connection behind a mutex), in both stores.
#ifndef QRAG_SERVER_RAG_DOCUMENT_STORE_H_
#define QRAG_SERVER_RAG_DOCUMENT_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/rag/index_spec.h"

namespace qrag::rag {

using Metadata = std::map<std::string, std::string>;

struct CollectionInfo {
  std::string name;
  std::string embedder;    // the encoder's model_id() the embeddings were made with
  std::string precision;   // the encoder's precision ("fp32", ...)
  int dim = 0;
  int chunk_tokens = 0;
  int chunk_overlap = 0;
  int64_t documents = 0;   // filled by List/Get
  int64_t chunks = 0;
  IndexSpec index;         // the vector index searched (resolved); exact for collections made before the choice
  // What serves searches now (Collections::List fills it from the live index). The store sets it only when
  // the stored index spec is unreadable: `index` is then exact, and this says why.
  std::string index_status;
  // Collections::List: with a shared store, the bound on how far this replica's index may be behind it.
  double index_lag_seconds = 0;
};

struct StoredChunk {
  std::string text;
  std::vector<float> embedding;
};

struct StoredDocument {
  std::string id;
  std::string text;
  Metadata metadata;
  std::vector<StoredChunk> chunks;
};

// What a chunk id resolves to for a retrieval result.
struct ChunkRecord {
  int64_t id = 0;
  std::string document_id;
  int seq = 0;  // position of the chunk in its document
  std::string text;
  Metadata metadata;  // the document's
};

// The store's interface; two implementations: SQLite (this header's contract above, Open) and PostgreSQL
// (postgres_store.h: shared by several replicas). Both: every mutating call is one transaction and returns OK
// only after it committed; a failed call changed nothing.
class DocumentStore {
 public:
  // Opens (creating if needed) the SQLite database `path`. FAILED_PRECONDITION when it cannot be created or
  // is read-only. `max_bytes` > 0 caps the database file (SQLite's max_page_count): a write past it fails as a
  // full disk does (RESOURCE_EXHAUSTED), which is how an operator bounds the disk the store may take.
  static absl::StatusOr<std::unique_ptr<DocumentStore>> Open(const std::string& path, int64_t max_bytes = 0);
  virtual ~DocumentStore() = default;

  // Where the store lives, for logs and messages: the SQLite file, or the PostgreSQL database as
  // "postgresql://user@host:port/dbname" (never a password).
  virtual const std::string& path() const = 0;
  // True when other processes may change the store (PostgreSQL replicas sharing one database).
  virtual bool shared() const { return false; }

  // ALREADY_EXISTS when the name is taken.
  virtual absl::Status CreateCollection(const CollectionInfo& info) = 0;
  virtual absl::StatusOr<std::vector<CollectionInfo>> ListCollections() = 0;
  // NOT_FOUND when absent.
  absl::StatusOr<CollectionInfo> GetCollection(const std::string& name);
  // Removes the collection and everything in it. NOT_FOUND when absent.
  virtual absl::Status DropCollection(const std::string& name) = 0;

  // Inserts or replaces (same id) `docs` in one transaction. For each replaced document, the ids of its
  // old chunks are appended to `removed` (and counted in `replaced`); the new chunks' ids, in order, to
  // `added` (per document). NOT_FOUND when the collection does not exist.
  virtual absl::Status UpsertDocuments(const std::string& collection, absl::Span<const StoredDocument> docs,
                                       std::vector<std::vector<int64_t>>* added, std::vector<int64_t>* removed,
                                       int64_t* replaced) = 0;
  // Deletes documents by id in one transaction; unknown ids are counted out of `deleted`. Appends the ids
  // of their chunks to `removed`.
  virtual absl::Status DeleteDocuments(const std::string& collection, absl::Span<const std::string> ids,
                                       int64_t* deleted, std::vector<int64_t>* removed) = 0;

  // Calls fn(chunk id, document id, embedding) for every chunk of the collection, in id order.
  virtual absl::Status ForEachChunk(
      const std::string& collection,
      const std::function<void(int64_t, const std::string&, absl::Span<const float>)>& fn) = 0;
  // The chunks `ids` (missing ids are skipped), in the order given.
  virtual absl::StatusOr<std::vector<ChunkRecord>> GetChunks(absl::Span<const int64_t> ids) = 0;
  // Document ids of the collection whose metadata has key == value for every pair of `filter`.
  virtual absl::StatusOr<std::vector<std::string>> FindDocuments(const std::string& collection,
                                                                 const Metadata& filter) = 0;
  // True when the document exists.
  virtual absl::StatusOr<bool> HasDocument(const std::string& collection, const std::string& id) = 0;

  // Keyword search (BM25 over an FTS5 index of the collection's chunks; Porter-stemmed, case- and
  // diacritics-folded words). The chunks matching any word of `query`, best first (higher bm25), at most
  // `limit` (0: all); `keep` (optional) filters by chunk id before the limit. An empty list when the query
  // has no word. SQLite keeps the index in the same transactions as the chunks; PostgreSQL replicas keep it
  // in memory, following the store.
  struct KeywordHit {
    int64_t id = 0;
    float bm25 = 0;  // > 0; FTS5's bm25() negated (k1 = 1.2, b = 0.75)
  };
  virtual absl::StatusOr<std::vector<KeywordHit>> KeywordSearch(const std::string& collection,
                                                                const std::string& query, int limit,
                                                                const std::function<bool(int64_t)>& keep = nullptr) = 0;
  // The collections whose keyword index was built at Open because the database predates it.
  virtual const std::vector<std::string>& keyword_indexes_built() const = 0;

  // Following the changes other replicas commit (shared() stores; the SQLite store has none: these defaults).
  struct Change {
    int64_t seq = 0;
    std::string collection;
    std::string document_id;  // empty for a collection's create or drop
    std::string kind;         // "create", "drop", "upsert", "delete"
    double committed_unix_seconds = 0;
  };
  // The changes with a sequence number above `after`, oldest first, at most `limit`.
  virtual absl::StatusOr<std::vector<Change>> ChangesSince(int64_t after, int limit) {
    return std::vector<Change>{};
  }
  // The newest sequence number committed (0: none yet).
  virtual absl::StatusOr<int64_t> LatestChange() { return 0; }
  // Returns when another process may have committed a change (PostgreSQL's NOTIFY), or after `timeout`.
  virtual void WaitForChange(absl::Duration timeout);
  struct ChunkVector {
    int64_t id = 0;
    std::vector<float> embedding;
  };
  // A document as the store holds it now, for a replica that learnt of a change to it: its chunks, by id (none
  // when the document or its collection is gone). The store's own keyword index is brought in line with them.
  virtual absl::StatusOr<std::vector<ChunkVector>> FollowDocument(const std::string& collection,
                                                                  const std::string& document_id) {
    return absl::UnimplementedError("this store has no other writers to follow");
  }
  // A collection created or dropped elsewhere: the store's keyword index loads or forgets it.
  virtual absl::Status FollowCollection(const std::string& collection) { return absl::OkStatus(); }
};

// An FTS5 query matching any word of `text`: the runs of letters and digits (ASCII alphanumerics, and every
// byte of a non-ASCII UTF-8 character, as FTS5's unicode61 tokenizer keeps letters), each quoted, joined by
// OR; duplicates once; at most 64 words. Empty when `text` has none.
std::string KeywordMatchQuery(const std::string& text);
// FTS5's tokenizer of every keyword index (the SQLite store's and the PostgreSQL replicas' in memory).
inline constexpr const char* kKeywordTokenizer = "porter unicode61 remove_diacritics 2";

// Metadata as a JSON object of strings (what the store keeps) and back.
std::string MetadataToJson(const Metadata& m);
absl::StatusOr<Metadata> MetadataFromJson(const std::string& json);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_DOCUMENT_STORE_H_
