// Internal to server/rag: what both document stores share. The FTS5 search of their keyword indexes (the
// SQLite store's durable one, the PostgreSQL store's in memory), so that BM25 ranks the same chunks the same
// way in either; and the reading of a stored index spec.
#ifndef QRAG_SERVER_RAG_STORE_INTERNAL_H_
#define QRAG_SERVER_RAG_STORE_INTERNAL_H_

#include <functional>
#include <string>
#include <vector>

#include "server/rag/document_store.h"

struct sqlite3;

namespace qrag::rag {

// The rows of FTS5 table `table` (quoted) matching `match` (KeywordMatchQuery), best first (bm25, then rowid),
// at most `limit` (0: all), filtered by `keep` (optional) before the limit. SQLITE_OK or SQLite's error code
// (`*failed`: what failed).
int SearchFts5(sqlite3* db, const std::string& table, const std::string& match, int limit,
               const std::function<bool(int64_t)>& keep, std::vector<DocumentStore::KeywordHit>* out,
               const char** failed);

// info->index from the stored JSON; an unreadable spec never loses the collection: exact search (always
// correct), with index_status saying why.
void SetStoredIndexSpec(const std::string& json, CollectionInfo* info);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_STORE_INTERNAL_H_
