// The PostgreSQL document store: collections, documents and chunks (embeddings as bytea, fp32 in the host's
// byte order) in a database that several qrag replicas share, so that they serve the same collections.
//
// Schema (created, or brought up to date, at Open in one transaction under an advisory lock, so replicas that
// start together do not race): qrag_collections, qrag_documents (metadata jsonb), qrag_chunks (id bigserial:
// chunk ids are the same on every replica), and qrag_changes, the change log: one row per created or dropped
// collection and per upserted or deleted document, with a sequence number and the commit time, written in the
// same transaction as the change. Writers serialize on a transaction-level advisory lock, so sequence numbers
// commit in order (a reader of "seq > last" never skips a change that commits late), and concurrent upserts
// of one document id end as the last commit wrote it.
//
// Durability: a mutating call returns OK only after PostgreSQL committed it; a failed call (the database
// unreachable or lost mid-call included) changed nothing that was acknowledged. Errors: the database
// unreachable or the connection lost is UNAVAILABLE (the next call reconnects); a full disk (SQLSTATE 53100)
// RESOURCE_EXHAUSTED; missing privileges (42501) or a read-only database (25006) FAILED_PRECONDITION; others
// INTERNAL. Messages name the database (never its password) and carry PostgreSQL's own message.
//
// Keyword search: each replica keeps the collections' chunks' words in an in-memory FTS5 index (the tokenizer
// and the BM25 of the SQLite store, so both stores rank alike), loaded at Open and updated by this replica's
// writes.
//
// Thread safety: every method may be called from any thread (one connection behind a mutex).
#ifndef QRAG_SERVER_RAG_POSTGRES_STORE_H_
#define QRAG_SERVER_RAG_POSTGRES_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/rag/document_store.h"

namespace qrag::rag {

// True for a connection string naming PostgreSQL: a "postgresql://" or "postgres://" URL.
bool IsPostgresUrl(const std::string& location);

// `conninfo` (a libpq URL or "key=value ..." string) as "postgresql://user@host:port/dbname": what logs and
// messages show, without a password.
std::string DescribePostgres(const std::string& conninfo);

// Connects (UNAVAILABLE when the database cannot be reached, INVALID_ARGUMENT for a malformed conninfo),
// creates or migrates the schema, and loads the keyword index.
absl::StatusOr<std::unique_ptr<DocumentStore>> OpenPostgresStore(const std::string& conninfo);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_POSTGRES_STORE_H_
