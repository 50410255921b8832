#include "server/rag/postgres_store.h"

#include <endian.h>
#include <sys/select.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/rag/store_internal.h"

namespace qrag::rag {
namespace {

// Taken by every writing transaction (pg_advisory_xact_lock): writers commit one at a time, in the order of
// their change-log sequence numbers. "qrag" in ASCII.
constexpr int64_t kWriteLock = 0x71726167;
constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS qrag_schema(version integer NOT NULL);
CREATE TABLE IF NOT EXISTS qrag_collections(
  name text PRIMARY KEY,
  embedder text NOT NULL,
  precision text NOT NULL,
  dim integer NOT NULL,
  chunk_tokens integer NOT NULL,
  chunk_overlap integer NOT NULL,
  index_spec text NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS qrag_documents(
  collection text NOT NULL REFERENCES qrag_collections(name) ON DELETE CASCADE,
  doc_id text NOT NULL,
  text text NOT NULL,
  metadata jsonb NOT NULL,
  PRIMARY KEY(collection, doc_id));
CREATE TABLE IF NOT EXISTS qrag_chunks(
  id bigserial PRIMARY KEY,
  collection text NOT NULL,
  doc_id text NOT NULL,
  seq integer NOT NULL,
  text text NOT NULL,
  embedding bytea NOT NULL,
  FOREIGN KEY(collection, doc_id) REFERENCES qrag_documents(collection, doc_id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS qrag_chunks_by_doc ON qrag_chunks(collection, doc_id);
CREATE TABLE IF NOT EXISTS qrag_changes(
  seq bigserial PRIMARY KEY,
  collection text NOT NULL,
  doc_id text,
  kind text NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT clock_timestamp());
)sql";

// A query parameter: text, or binary (bytea), or NULL.
struct Param {
  std::string value;
  bool binary = false;
  bool null = false;
};
Param Text(std::string v) { return Param{std::move(v), false, false}; }
Param Int(int64_t v) { return Param{absl::StrCat(v), false, false}; }

class Result {
 public:
  explicit Result(PGresult* r = nullptr) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result& operator=(Result&& o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  PGresult* get() const { return r_; }
  int rows() const { return PQntuples(r_); }
  std::string Str(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
  }
  int64_t Num(int row, int col) const {
    int64_t v = 0;
    (void)absl::SimpleAtoi(absl::string_view(PQgetvalue(r_, row, col)), &v);
    return v;
  }

 private:
  PGresult* r_ = nullptr;
};

// The in-memory FTS5 index of this replica: one table per collection, rowid = chunk id.
class KeywordMirror {
 public:
  KeywordMirror() { sqlite3_open(":memory:", &db_); }
  ~KeywordMirror() { sqlite3_close_v2(db_); }

  absl::Status Create(const std::string& collection) {
    return Exec(absl::StrCat("CREATE VIRTUAL TABLE IF NOT EXISTS ", Table(collection), " USING fts5(text, tokenize='",
                             kKeywordTokenizer, "')"));
  }
  absl::Status Drop(const std::string& collection) {
    docs_.erase(collection);
    return Exec(absl::StrCat("DROP TABLE IF EXISTS ", Table(collection)));
  }
  // Document `doc` of `collection` now has `chunks` (id, text): its old chunks' words go, the new ones' come.
  absl::Status SetDocument(const std::string& collection, const std::string& doc,
                           const std::vector<std::pair<int64_t, std::string>>& chunks) {
    std::vector<int64_t>& ids = docs_[collection][doc];
    for (int64_t id : ids) {
      QRAG_RETURN_IF_ERROR(Run(absl::StrCat("DELETE FROM ", Table(collection), " WHERE rowid = ?"), id, nullptr));
    }
    ids.clear();
    for (const auto& [id, text] : chunks) {
      QRAG_RETURN_IF_ERROR(Run(absl::StrCat("INSERT INTO ", Table(collection), "(rowid, text) VALUES(?, ?)"), id, &text));
      ids.push_back(id);
    }
    if (ids.empty()) docs_[collection].erase(doc);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<DocumentStore::KeywordHit>> Search(const std::string& collection, const std::string& match,
                                                                int limit, const std::function<bool(int64_t)>& keep) {
    std::vector<DocumentStore::KeywordHit> out;
    const char* failed = nullptr;
    if (const int rc = SearchFts5(db_, Table(collection), match, limit, keep, &out, &failed); rc != SQLITE_OK) {
      return absl::InternalError(absl::StrCat("in-memory keyword index: ", failed, ": ", sqlite3_errmsg(db_)));
    }
    return out;
  }

 private:
  static std::string Table(const std::string& collection) { return absl::StrCat("\"fts:", collection, "\""); }
  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    const std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    if (rc != SQLITE_OK) return absl::InternalError(absl::StrCat("in-memory keyword index: ", msg));
    return absl::OkStatus();
  }
  absl::Status Run(const std::string& sql, int64_t id, const std::string* text) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      if (text != nullptr) sqlite3_bind_text(st, 2, text->data(), static_cast<int>(text->size()), SQLITE_STATIC);
      rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("in-memory keyword index: ", sqlite3_errmsg(db_)));
    }
    return absl::OkStatus();
  }

  sqlite3* db_ = nullptr;
  std::map<std::string, std::map<std::string, std::vector<int64_t>>> docs_;  // collection -> document -> chunk ids
};

class PostgresDocumentStore final : public DocumentStore {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresDocumentStore>> Open(const std::string& conninfo);
  ~PostgresDocumentStore() override {
    {
      absl::MutexLock lock(&listen_mu_);
      if (listen_ != nullptr) PQfinish(listen_);
    }
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr) PQfinish(conn_);
  }

  const std::string& path() const override { return name_; }
  bool shared() const override { return true; }
  absl::Status CreateCollection(const CollectionInfo& info) override;
  absl::StatusOr<std::vector<CollectionInfo>> ListCollections() override;
  absl::Status DropCollection(const std::string& name) override;
  absl::Status UpsertDocuments(const std::string& collection, absl::Span<const StoredDocument> docs,
                               std::vector<std::vector<int64_t>>* added, std::vector<int64_t>* removed,
                               int64_t* replaced) override;
  absl::Status DeleteDocuments(const std::string& collection, absl::Span<const std::string> ids, int64_t* deleted,
                               std::vector<int64_t>* removed) override;
  absl::Status ForEachChunk(const std::string& collection,
                            const std::function<void(int64_t, const std::string&, absl::Span<const float>)>& fn)
      override;
  absl::StatusOr<std::vector<ChunkRecord>> GetChunks(absl::Span<const int64_t> ids) override;
  absl::StatusOr<std::vector<std::string>> FindDocuments(const std::string& collection,
                                                         const Metadata& filter) override;
  absl::StatusOr<bool> HasDocument(const std::string& collection, const std::string& id) override;
  absl::StatusOr<std::vector<KeywordHit>> KeywordSearch(const std::string& collection, const std::string& query,
                                                        int limit, const std::function<bool(int64_t)>& keep) override;
  const std::vector<std::string>& keyword_indexes_built() const override { return none_; }
  absl::StatusOr<std::vector<Change>> ChangesSince(int64_t after, int limit) override;
  absl::StatusOr<int64_t> LatestChange() override;
  void WaitForChange(absl::Duration timeout) override;
  absl::StatusOr<std::vector<ChunkVector>> FollowDocument(const std::string& collection,
                                                          const std::string& document_id) override;
  absl::Status FollowCollection(const std::string& collection) override;

 private:
  PostgresDocumentStore() = default;

  // A usable connection: reconnects a broken one (UNAVAILABLE when that fails).
  absl::Status Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `sql` with `params` ($1, ...); `binary_result` asks for binary columns. The error, mapped (header), names
  // `what`.
  absl::StatusOr<Result> Query(const char* what, const std::string& sql, const std::vector<Param>& params = {},
                               bool binary_result = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Error(const char* what, const PGresult* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` in a transaction holding the write lock; commits when it returns OK, else rolls back.
  absl::Status Write(const std::function<absl::Status()>& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckCollection(const std::string& collection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LogChange(const std::string& collection, const std::string* doc_id, const char* kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the ids and texts of a document's chunks (inside the caller's transaction).
  absl::Status DocumentChunks(const std::string& collection, const std::string& doc,
                              std::vector<int64_t>* ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Loads `collection`'s chunks into the in-memory keyword index unless it holds them already.
  absl::Status Mirror(const std::string& collection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a commit: applies it to the keyword index of `collection` when that holds the collection; a failure
  // there does not undo the commit: the collection is reloaded at its next keyword search instead.
  // `documents`: each changed document's chunks (id, text) after the commit, none for a deleted one.
  using DocumentChunkTexts = std::vector<std::pair<std::string, std::vector<std::pair<int64_t, std::string>>>>;
  void FollowCommit(const std::string& collection, const DocumentChunkTexts& documents)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string conninfo_, name_;
  std::vector<std::string> none_;
  absl::Mutex mu_;
  PGconn* conn_ ABSL_GUARDED_BY(mu_) = nullptr;
  KeywordMirror keywords_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> mirrored_ ABSL_GUARDED_BY(mu_);  // collections the keyword index holds
  // WaitForChange's own connection, LISTENing on qrag_changes (used by one thread at a time).
  absl::Mutex listen_mu_;
  PGconn* listen_ ABSL_GUARDED_BY(listen_mu_) = nullptr;
};

absl::StatusOr<std::unique_ptr<PostgresDocumentStore>> PostgresDocumentStore::Open(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &err);
  if (parsed == nullptr) {
    const std::string msg = err != nullptr ? err : "out of memory";
    PQfreemem(err);
    return absl::InvalidArgumentError(absl::StrCat("PostgreSQL connection string: ", absl::StripTrailingAsciiWhitespace(msg)));
  }
  PQconninfoFree(parsed);
  std::unique_ptr<PostgresDocumentStore> s(new PostgresDocumentStore());
  s->conninfo_ = conninfo;
  s->name_ = DescribePostgres(conninfo);
  absl::MutexLock lock(&s->mu_);
  QRAG_RETURN_IF_ERROR(s->Connect());
  QRAG_RETURN_IF_ERROR(s->Write([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(s->Query("create the schema", kSchema).status());
    QRAG_ASSIGN_OR_RETURN(Result v, s->Query("read the schema version", "SELECT max(version) FROM qrag_schema"));
    if (v.rows() == 1 && !PQgetisnull(v.get(), 0, 0) && v.Num(0, 0) > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(s->name_, ": the schema is version ", v.Num(0, 0),
                                                        ", newer than this server's ", kSchemaVersion,
                                                        ": upgrade qrag-server"));
    }
    if (v.rows() == 0 || PQgetisnull(v.get(), 0, 0)) {
      QRAG_RETURN_IF_ERROR(s->Query("record the schema version", "INSERT INTO qrag_schema(version) VALUES($1)",
                                    {Int(kSchemaVersion)}).status());
    }
    return absl::OkStatus();
  }));
  QRAG_ASSIGN_OR_RETURN(Result names, s->Query("list collections", "SELECT name FROM qrag_collections"));
  for (int i = 0; i < names.rows(); ++i) QRAG_RETURN_IF_ERROR(s->Mirror(names.Str(i, 0)));
  return s;
}

absl::Status PostgresDocumentStore::Connect() {
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
  if (conn_ == nullptr) {
    conn_ = PQconnectdb(conninfo_.c_str());
  } else {
    PQreset(conn_);
  }
  if (PQstatus(conn_) == CONNECTION_OK) {
    // NOTICEs ("relation already exists, skipping" from the schema's IF NOT EXISTS) are not for the log.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("cannot reach the PostgreSQL database ", name_, ": ",
                                               absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn_))));
  }
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::Error(const char* what, const PGresult* r) {
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string code = state != nullptr ? state : "";
  std::string pg = r != nullptr ? PQresultErrorMessage(r) : "";
  if (pg.empty()) pg = PQerrorMessage(conn_);
  const std::string msg = absl::StrCat(name_, ": ", what, ": ", absl::StripTrailingAsciiWhitespace(pg));
  if (PQstatus(conn_) != CONNECTION_OK || absl::StartsWith(code, "08") || code == "57P01" || code == "57P02" ||
      code == "57P03") {
    return absl::UnavailableError(absl::StrCat(msg, " (the database connection was lost: nothing was stored)"));
  }
  if (code == "53100") return absl::ResourceExhaustedError(absl::StrCat(msg, " (disk full: nothing was stored)"));
  if (code == "42501" || code == "25006") {
    return absl::FailedPreconditionError(absl::StrCat(msg, " (the database is not writable: nothing was stored)"));
  }
  if (code == "23505") return absl::AlreadyExistsError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<Result> PostgresDocumentStore::Query(const char* what, const std::string& sql,
                                                    const std::vector<Param>& params, bool binary_result) {
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size()), formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].null ? nullptr : params[i].value.data();
    lengths[i] = static_cast<int>(params[i].value.size());
    formats[i] = params[i].binary ? 1 : 0;
  }
  // No parameters: the simple protocol, which runs several statements (the schema) at once.
  Result r(params.empty() && !binary_result
               ? PQexec(conn_, sql.c_str())
               : PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                              lengths.data(), formats.data(), binary_result ? 1 : 0));
  const ExecStatusType st = r.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(what, r.get());
  return r;
}

absl::Status PostgresDocumentStore::Write(const std::function<absl::Status()>& body) {
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_RETURN_IF_ERROR(Query("begin", "BEGIN").status());
  absl::Status s = Query("take the write lock", "SELECT pg_advisory_xact_lock($1)", {Int(kWriteLock)}).status();
  if (s.ok()) s = body();
  if (s.ok()) s = Query("commit", "COMMIT").status();
  if (!s.ok() && PQstatus(conn_) == CONNECTION_OK) PQclear(PQexec(conn_, "ROLLBACK"));
  return s;
}

absl::Status PostgresDocumentStore::CheckCollection(const std::string& collection) {
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the collection", "SELECT 1 FROM qrag_collections WHERE name = $1",
                                        {Text(collection)}));
  if (r.rows() == 0) return absl::NotFoundError(absl::StrCat("collection ", Echo(collection), " does not exist"));
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::LogChange(const std::string& collection, const std::string* doc_id,
                                              const char* kind) {
  Param doc = doc_id != nullptr ? Text(*doc_id) : Param{"", false, true};
  return Query("log the change", "INSERT INTO qrag_changes(collection, doc_id, kind) VALUES($1, $2, $3)",
               {Text(collection), doc, Text(kind)})
      .status();
}

absl::Status PostgresDocumentStore::Mirror(const std::string& collection) {
  if (mirrored_.count(collection) > 0) return absl::OkStatus();
  QRAG_RETURN_IF_ERROR(keywords_.Drop(collection));
  QRAG_RETURN_IF_ERROR(keywords_.Create(collection));
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the chunks' text", "SELECT doc_id, id, text FROM qrag_chunks "
                                                                 "WHERE collection = $1 ORDER BY doc_id, id",
                                        {Text(collection)}));
  for (int i = 0; i < r.rows();) {
    const std::string doc = r.Str(i, 0);
    std::vector<std::pair<int64_t, std::string>> chunks;
    for (; i < r.rows() && r.Str(i, 0) == doc; ++i) chunks.emplace_back(r.Num(i, 1), r.Str(i, 2));
    QRAG_RETURN_IF_ERROR(keywords_.SetDocument(collection, doc, chunks));
  }
  mirrored_.insert(collection);
  return absl::OkStatus();
}

void PostgresDocumentStore::FollowCommit(const std::string& collection, const DocumentChunkTexts& documents) {
  if (mirrored_.count(collection) == 0) return;
  for (const auto& [doc, chunks] : documents) {
    if (!keywords_.SetDocument(collection, doc, chunks).ok()) {
      mirrored_.erase(collection);  // reloaded at the next keyword search
      return;
    }
  }
}

absl::Status PostgresDocumentStore::CreateCollection(const CollectionInfo& info) {
  absl::MutexLock lock(&mu_);
  absl::Status s = Write([&]() -> absl::Status {
    QRAG_ASSIGN_OR_RETURN(Result r, Query("read the collection", "SELECT 1 FROM qrag_collections WHERE name = $1",
                                          {Text(info.name)}));
    if (r.rows() > 0) return absl::AlreadyExistsError(absl::StrCat("collection '", info.name, "' already exists"));
    QRAG_RETURN_IF_ERROR(Query("create collection",
                               "INSERT INTO qrag_collections(name, embedder, precision, dim, chunk_tokens, "
                               "chunk_overlap, index_spec) VALUES($1, $2, $3, $4, $5, $6, $7)",
                               {Text(info.name), Text(info.embedder), Text(info.precision), Int(info.dim),
                                Int(info.chunk_tokens), Int(info.chunk_overlap), Text(IndexSpecToJson(info.index))})
                             .status());
    QRAG_RETURN_IF_ERROR(LogChange(info.name, nullptr, "create"));
    return Query("notify", "NOTIFY qrag_changes").status();
  });
  QRAG_RETURN_IF_ERROR(s);
  if (keywords_.Drop(info.name).ok() && keywords_.Create(info.name).ok()) mirrored_.insert(info.name);
  return absl::OkStatus();  // committed; a keyword index that failed here is loaded at the first search
}

absl::StatusOr<std::vector<CollectionInfo>> PostgresDocumentStore::ListCollections() {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(
      Result r, Query("list collections",
                      "SELECT name, embedder, precision, dim, chunk_tokens, chunk_overlap, index_spec, "
                      "(SELECT count(*) FROM qrag_documents d WHERE d.collection = c.name), "
                      "(SELECT count(*) FROM qrag_chunks k WHERE k.collection = c.name) "
                      "FROM qrag_collections c ORDER BY name"));
  std::vector<CollectionInfo> out;
  for (int i = 0; i < r.rows(); ++i) {
    CollectionInfo c;
    c.name = r.Str(i, 0);
    c.embedder = r.Str(i, 1);
    c.precision = r.Str(i, 2);
    c.dim = static_cast<int>(r.Num(i, 3));
    c.chunk_tokens = static_cast<int>(r.Num(i, 4));
    c.chunk_overlap = static_cast<int>(r.Num(i, 5));
    SetStoredIndexSpec(r.Str(i, 6), &c);
    c.documents = r.Num(i, 7);
    c.chunks = r.Num(i, 8);
    out.push_back(std::move(c));
  }
  return out;
}

absl::Status PostgresDocumentStore::DropCollection(const std::string& name) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Write([&]() -> absl::Status {
    QRAG_ASSIGN_OR_RETURN(Result r, Query("drop collection", "DELETE FROM qrag_collections WHERE name = $1",
                                          {Text(name)}));
    if (std::string(PQcmdTuples(r.get())) == "0") {
      return absl::NotFoundError(absl::StrCat("collection ", Echo(name), " does not exist"));
    }
    QRAG_RETURN_IF_ERROR(Query("drop the chunks", "DELETE FROM qrag_chunks WHERE collection = $1", {Text(name)}).status());
    QRAG_RETURN_IF_ERROR(LogChange(name, nullptr, "drop"));
    return Query("notify", "NOTIFY qrag_changes").status();
  }));
  mirrored_.erase(name);
  (void)keywords_.Drop(name);  // committed; a table left behind is replaced if the name comes back
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::DocumentChunks(const std::string& collection, const std::string& doc,
                                                   std::vector<int64_t>* ids) {
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read chunks", "SELECT id FROM qrag_chunks WHERE collection = $1 AND "
                                                       "doc_id = $2 ORDER BY id",
                                        {Text(collection), Text(doc)}));
  for (int i = 0; i < r.rows(); ++i) ids->push_back(r.Num(i, 0));
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::UpsertDocuments(const std::string& collection,
                                                    absl::Span<const StoredDocument> docs,
                                                    std::vector<std::vector<int64_t>>* added,
                                                    std::vector<int64_t>* removed, int64_t* replaced) {
  absl::MutexLock lock(&mu_);
  std::vector<std::vector<int64_t>> new_ids;
  std::vector<int64_t> old_ids;
  int64_t replaced_docs = 0;
  QRAG_RETURN_IF_ERROR(Write([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(CheckCollection(collection));
    for (const StoredDocument& d : docs) {
      QRAG_RETURN_IF_ERROR(DocumentChunks(collection, d.id, &old_ids));
      QRAG_ASSIGN_OR_RETURN(Result del, Query("delete old document",
                                              "DELETE FROM qrag_documents WHERE collection = $1 AND doc_id = $2",
                                              {Text(collection), Text(d.id)}));
      replaced_docs += std::string(PQcmdTuples(del.get())) != "0";
      QRAG_RETURN_IF_ERROR(Query("insert document",
                                 "INSERT INTO qrag_documents(collection, doc_id, text, metadata) "
                                 "VALUES($1, $2, $3, $4::jsonb)",
                                 {Text(collection), Text(d.id), Text(d.text), Text(MetadataToJson(d.metadata))})
                               .status());
      std::vector<int64_t> ids;
      for (size_t c = 0; c < d.chunks.size(); ++c) {
        const std::vector<float>& e = d.chunks[c].embedding;
        Param blob{std::string(reinterpret_cast<const char*>(e.data()), e.size() * sizeof(float)), true, false};
        QRAG_ASSIGN_OR_RETURN(Result r, Query("insert chunk",
                                              "INSERT INTO qrag_chunks(collection, doc_id, seq, text, embedding) "
                                              "VALUES($1, $2, $3, $4, $5) RETURNING id",
                                              {Text(collection), Text(d.id), Int(static_cast<int64_t>(c)),
                                               Text(d.chunks[c].text), std::move(blob)}));
        ids.push_back(r.Num(0, 0));
      }
      new_ids.push_back(std::move(ids));
      QRAG_RETURN_IF_ERROR(LogChange(collection, &d.id, "upsert"));
    }
    return Query("notify", "NOTIFY qrag_changes").status();
  }));
  // Committed: this replica's keyword index follows.
  DocumentChunkTexts texts(docs.size());
  for (size_t d = 0; d < docs.size(); ++d) {
    texts[d].first = docs[d].id;
    for (size_t c = 0; c < new_ids[d].size(); ++c) texts[d].second.emplace_back(new_ids[d][c], docs[d].chunks[c].text);
  }
  FollowCommit(collection, texts);
  for (auto& ids : new_ids) added->push_back(std::move(ids));
  *replaced = replaced_docs;
  removed->insert(removed->end(), old_ids.begin(), old_ids.end());
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::DeleteDocuments(const std::string& collection, absl::Span<const std::string> ids,
                                                    int64_t* deleted, std::vector<int64_t>* removed) {
  absl::MutexLock lock(&mu_);
  int64_t count = 0;
  std::vector<int64_t> old_ids;
  QRAG_RETURN_IF_ERROR(Write([&]() -> absl::Status {
    QRAG_RETURN_IF_ERROR(CheckCollection(collection));
    for (const std::string& id : ids) {
      QRAG_RETURN_IF_ERROR(DocumentChunks(collection, id, &old_ids));
      QRAG_ASSIGN_OR_RETURN(Result del, Query("delete document",
                                              "DELETE FROM qrag_documents WHERE collection = $1 AND doc_id = $2",
                                              {Text(collection), Text(id)}));
      if (std::string(PQcmdTuples(del.get())) != "0") {
        ++count;
        QRAG_RETURN_IF_ERROR(LogChange(collection, &id, "delete"));
      }
    }
    return Query("notify", "NOTIFY qrag_changes").status();
  }));
  DocumentChunkTexts gone;
  for (const std::string& id : ids) gone.emplace_back(id, std::vector<std::pair<int64_t, std::string>>{});
  FollowCommit(collection, gone);
  *deleted = count;
  removed->insert(removed->end(), old_ids.begin(), old_ids.end());
  return absl::OkStatus();
}

absl::Status PostgresDocumentStore::ForEachChunk(
    const std::string& collection, const std::function<void(int64_t, const std::string&, absl::Span<const float>)>& fn) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  // Binary columns: id as a big-endian int8, doc_id as its bytes, the embedding's bytes.
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read chunks",
                                        "SELECT id, doc_id, embedding FROM qrag_chunks WHERE collection = $1 "
                                        "ORDER BY id",
                                        {Text(collection)}, /*binary_result=*/true));
  std::vector<float> v;
  for (int i = 0; i < r.rows(); ++i) {
    uint64_t be = 0;
    std::memcpy(&be, PQgetvalue(r.get(), i, 0), sizeof(be));
    const int bytes = PQgetlength(r.get(), i, 2);
    v.resize(static_cast<size_t>(bytes) / sizeof(float));
    if (bytes > 0) std::memcpy(v.data(), PQgetvalue(r.get(), i, 2), v.size() * sizeof(float));
    fn(static_cast<int64_t>(be64toh(be)), r.Str(i, 1), v);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ChunkRecord>> PostgresDocumentStore::GetChunks(absl::Span<const int64_t> ids) {
  std::vector<ChunkRecord> out;
  if (ids.empty()) return out;
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read chunks",
                                        "SELECT k.id, k.doc_id, k.seq, k.text, d.metadata::text FROM qrag_chunks k "
                                        "JOIN qrag_documents d ON d.collection = k.collection AND d.doc_id = k.doc_id "
                                        "WHERE k.id = ANY($1::bigint[])",
                                        {Text(absl::StrCat("{", absl::StrJoin(ids, ","), "}"))}));
  std::map<int64_t, int> row_of;
  for (int i = 0; i < r.rows(); ++i) row_of[r.Num(i, 0)] = i;
  for (int64_t id : ids) {
    auto it = row_of.find(id);
    if (it == row_of.end()) continue;
    const int i = it->second;
    ChunkRecord c;
    c.id = id;
    c.document_id = r.Str(i, 1);
    c.seq = static_cast<int>(r.Num(i, 2));
    c.text = r.Str(i, 3);
    QRAG_ASSIGN_OR_RETURN(c.metadata, MetadataFromJson(r.Str(i, 4)));
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> PostgresDocumentStore::FindDocuments(const std::string& collection,
                                                                              const Metadata& filter) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  // jsonb containment: every key of the filter present with that (string) value.
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read documents",
                                        "SELECT doc_id FROM qrag_documents WHERE collection = $1 AND "
                                        "metadata @> $2::jsonb ORDER BY doc_id",
                                        {Text(collection), Text(MetadataToJson(filter))}));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Str(i, 0));
  return out;
}

absl::StatusOr<bool> PostgresDocumentStore::HasDocument(const std::string& collection, const std::string& id) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read document",
                                        "SELECT 1 FROM qrag_documents WHERE collection = $1 AND doc_id = $2",
                                        {Text(collection), Text(id)}));
  return r.rows() > 0;
}

absl::StatusOr<std::vector<DocumentStore::KeywordHit>> PostgresDocumentStore::KeywordSearch(
    const std::string& collection, const std::string& query, int limit, const std::function<bool(int64_t)>& keep) {
  const std::string match = KeywordMatchQuery(query);
  if (match.empty()) return std::vector<KeywordHit>{};
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_RETURN_IF_ERROR(Mirror(collection));
  return keywords_.Search(collection, match, limit, keep);
}

absl::StatusOr<std::vector<DocumentStore::Change>> PostgresDocumentStore::ChangesSince(int64_t after, int limit) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the change log",
                                        "SELECT seq, collection, coalesce(doc_id, ''), kind, "
                                        "extract(epoch FROM committed_at)::float8 FROM qrag_changes "
                                        "WHERE seq > $1 ORDER BY seq LIMIT $2",
                                        {Int(after), Int(limit)}));
  std::vector<Change> out(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    out[i].seq = r.Num(i, 0);
    out[i].collection = r.Str(i, 1);
    out[i].document_id = r.Str(i, 2);
    out[i].kind = r.Str(i, 3);
    (void)absl::SimpleAtod(r.Str(i, 4), &out[i].committed_unix_seconds);
  }
  return out;
}

absl::StatusOr<int64_t> PostgresDocumentStore::LatestChange() {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the change log", "SELECT coalesce(max(seq), 0) FROM qrag_changes"));
  return r.Num(0, 0);
}

void PostgresDocumentStore::WaitForChange(absl::Duration timeout) {
  absl::MutexLock lock(&listen_mu_);
  if (listen_ == nullptr || PQstatus(listen_) != CONNECTION_OK) {
    if (listen_ != nullptr) PQfinish(listen_);
    listen_ = PQconnectdb(conninfo_.c_str());
    PGresult* r = PQstatus(listen_) == CONNECTION_OK ? PQexec(listen_, "LISTEN qrag_changes") : nullptr;
    const bool listening = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!listening) {  // the database is away: the caller polls again after the timeout
      absl::SleepFor(timeout);
      return;
    }
  }
  const int fd = PQsocket(listen_);
  fd_set fds;
  FD_ZERO(&fds);
  FD_SET(fd, &fds);
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(timeout)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000)};
  if (select(fd + 1, &fds, nullptr, nullptr, &tv) > 0) {
    PQconsumeInput(listen_);  // a lost connection shows in PQstatus at the next call
    while (PGnotify* n = PQnotifies(listen_)) PQfreemem(n);
  }
}

absl::StatusOr<std::vector<DocumentStore::ChunkVector>> PostgresDocumentStore::FollowDocument(
    const std::string& collection, const std::string& document_id) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the document's chunks",
                                        "SELECT id, text, embedding FROM qrag_chunks WHERE collection = $1 AND "
                                        "doc_id = $2 ORDER BY id",
                                        {Text(collection), Text(document_id)}, /*binary_result=*/true));
  std::vector<ChunkVector> out(r.rows());
  std::vector<std::pair<int64_t, std::string>> texts;
  for (int i = 0; i < r.rows(); ++i) {
    uint64_t be = 0;
    std::memcpy(&be, PQgetvalue(r.get(), i, 0), sizeof(be));
    out[i].id = static_cast<int64_t>(be64toh(be));
    out[i].embedding.resize(static_cast<size_t>(PQgetlength(r.get(), i, 2)) / sizeof(float));
    std::memcpy(out[i].embedding.data(), PQgetvalue(r.get(), i, 2), out[i].embedding.size() * sizeof(float));
    texts.emplace_back(out[i].id, r.Str(i, 1));
  }
  FollowCommit(collection, {{document_id, std::move(texts)}});
  return out;
}

absl::Status PostgresDocumentStore::FollowCollection(const std::string& collection) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Connect());
  mirrored_.erase(collection);
  QRAG_ASSIGN_OR_RETURN(Result r, Query("read the collection", "SELECT 1 FROM qrag_collections WHERE name = $1",
                                        {Text(collection)}));
  if (r.rows() == 0) return keywords_.Drop(collection);
  return Mirror(collection);
}

}  // namespace

bool IsPostgresUrl(const std::string& location) {
  return absl::StartsWith(location, "postgresql://") || absl::StartsWith(location, "postgres://");
}

std::string DescribePostgres(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  PQfreemem(err);
  if (opts == nullptr) return "postgresql://(unparsable connection string)";
  std::map<std::string, std::string> v;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) v[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  auto get = [&](const char* k, const char* dflt) { return v.count(k) ? v[k] : std::string(dflt); };
  return absl::StrCat("postgresql://", get("user", ""), v.count("user") ? "@" : "", get("host", "localhost"), ":",
                      get("port", "5432"), "/", get("dbname", get("user", "").c_str()));
}

absl::StatusOr<std::unique_ptr<DocumentStore>> OpenPostgresStore(const std::string& conninfo) {
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<PostgresDocumentStore> s, PostgresDocumentStore::Open(conninfo));
  return s;
}

}  // namespace qrag::rag
