#include "server/rag/document_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/rag/store_internal.h"

namespace qrag::rag {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS collections(
  name TEXT PRIMARY KEY,
  embedder TEXT NOT NULL,
  precision TEXT NOT NULL,
  dim INTEGER NOT NULL,
  chunk_tokens INTEGER NOT NULL,
  chunk_overlap INTEGER NOT NULL,
  index_spec TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS documents(
  collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  doc_id TEXT NOT NULL,
  text TEXT NOT NULL,
  metadata TEXT NOT NULL,
  PRIMARY KEY(collection, doc_id));
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL,
  doc_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  text TEXT NOT NULL,
  embedding BLOB NOT NULL,
  FOREIGN KEY(collection, doc_id) REFERENCES documents(collection, doc_id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(collection, doc_id);
)sql";

// A prepared statement, finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  int prepare_rc() const { return rc_; }
  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, const std::string& s) { sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Blob(int i, const void* p, size_t n) { sqlite3_bind_blob(stmt_, i, p, static_cast<int>(n), SQLITE_TRANSIENT); }
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string ColText(int i) {
    const unsigned char* p = sqlite3_column_text(stmt_, i);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, i));
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(stmt_, i); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

// The FTS5 table of a collection's chunks, and the view of those chunks that is its external content (so
// FTS5's integrity-check compares the index with exactly the collection's chunks); quoted (collection names
// are [A-Za-z0-9_.-]: no quote inside).
std::string FtsTable(const std::string& collection) { return absl::StrCat("\"fts:", collection, "\""); }
std::string FtsContent(const std::string& collection) { return absl::StrCat("\"chunks:", collection, "\""); }

}  // namespace

std::string KeywordMatchQuery(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && words.size() < 64 && std::find(words.begin(), words.end(), word) == words.end()) {
      words.push_back(word);
    }
    word.clear();
  };
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      word.push_back(static_cast<char>(c < 0x80 ? std::tolower(c) : c));
    } else {
      flush();
    }
  }
  flush();
  std::string q;
  for (const std::string& w : words) absl::StrAppend(&q, q.empty() ? "" : " OR ", "\"", w, "\"");
  return q;
}

namespace {

// The chunks of document `doc`: appends their ids to `ids` and removes their words from the keyword index
// (`old_chunks`: SELECT id, text of a document's chunks; `fts_del`: the index's 'delete' command). SQLITE_OK,
// or the failing step's code with `*failed` saying what it was.
int UnindexChunks(Statement& old_chunks, Statement& fts_del, const std::string& collection, const std::string& doc,
                  std::vector<int64_t>* ids, const char** failed) {
  old_chunks.Text(1, collection);
  old_chunks.Text(2, doc);
  int rc;
  while ((rc = old_chunks.Step()) == SQLITE_ROW) {
    const int64_t id = old_chunks.ColInt(0);
    ids->push_back(id);
    fts_del.Int(1, id);
    fts_del.Text(2, old_chunks.ColText(1));
    if (const int drc = fts_del.Step(); drc != SQLITE_DONE) {
      *failed = "unindex chunk";
      return drc;
    }
    fts_del.Reset();
  }
  old_chunks.Reset();
  if (rc != SQLITE_DONE) {
    *failed = "read chunks";
    return rc;
  }
  return SQLITE_OK;
}

}  // namespace

// The SQLite implementation (the contract at the top of document_store.h).
class SqliteDocumentStore final : public DocumentStore {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDocumentStore>> Open(const std::string& path, int64_t max_bytes);
  ~SqliteDocumentStore() override;

  const std::string& path() const override { return path_; }
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
  const std::vector<std::string>& keyword_indexes_built() const override { return keyword_indexes_built_; }

 private:
  SqliteDocumentStore() = default;
  absl::Status Error(int rc, const char* what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates `collection`'s keyword index and fills it from its chunks (inside the caller's transaction).
  absl::Status BuildKeywordIndex(const std::string& collection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string path_;
  std::vector<std::string> keyword_indexes_built_;
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_) = nullptr;
};

std::string MetadataToJson(const Metadata& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j.dump();
}

absl::StatusOr<Metadata> MetadataFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::DataLossError("stored metadata is not a JSON object");
  Metadata m;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return absl::DataLossError("stored metadata value is not a string");
    m[k] = v.get<std::string>();
  }
  return m;
}

SqliteDocumentStore::~SqliteDocumentStore() {
  absl::MutexLock lock(&mu_);
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

absl::Status SqliteDocumentStore::Error(int rc, const char* what) {
  const std::string msg = absl::StrCat(path_, ": ", what, ": ", db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(absl::StrCat(msg, " (disk full: free space, nothing was stored)"));
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::FailedPreconditionError(
          absl::StrCat(msg, " (the data directory is not writable: nothing was stored)"));
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(msg);
    case SQLITE_IOERR:
      return absl::UnavailableError(absl::StrCat(msg, " (I/O error: nothing was stored)"));
    default:
      return absl::InternalError(msg);
  }
}

absl::Status SqliteDocumentStore::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return Error(rc, sql);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DocumentStore>> DocumentStore::Open(const std::string& path, int64_t max_bytes) {
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDocumentStore> s, SqliteDocumentStore::Open(path, max_bytes));
  return s;
}

absl::StatusOr<std::unique_ptr<SqliteDocumentStore>> SqliteDocumentStore::Open(const std::string& path,
                                                                               int64_t max_bytes) {
  std::unique_ptr<SqliteDocumentStore> s(new SqliteDocumentStore());
  s->path_ = path;
  absl::MutexLock lock(&s->mu_);
  const int rc = sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) return s->Error(rc, "cannot open the RAG database");
  sqlite3_busy_timeout(s->db_, 5000);
  QRAG_RETURN_IF_ERROR(s->Exec("PRAGMA journal_mode=WAL"));
  QRAG_RETURN_IF_ERROR(s->Exec("PRAGMA synchronous=FULL"));
  QRAG_RETURN_IF_ERROR(s->Exec("PRAGMA foreign_keys=ON"));
  QRAG_RETURN_IF_ERROR(s->Exec(kSchema));
  {  // databases made before collections chose their index: add the column ('' reads as exact)
    Statement cols(s->db_, "SELECT 1 FROM pragma_table_info('collections') WHERE name = 'index_spec'");
    if (cols.Step() != SQLITE_ROW) {
      QRAG_RETURN_IF_ERROR(s->Exec("ALTER TABLE collections ADD COLUMN index_spec TEXT NOT NULL DEFAULT ''"));
    }
  }
  {  // collections from before the keyword index: build it now (one transaction each)
    std::vector<std::string> missing;
    Statement st(s->db_,
                 "SELECT name FROM collections c WHERE NOT EXISTS "
                 "(SELECT 1 FROM sqlite_master m WHERE m.type = 'table' AND m.name = 'fts:' || c.name)");
    while (st.Step() == SQLITE_ROW) missing.push_back(st.ColText(0));
    for (const std::string& name : missing) {
      QRAG_RETURN_IF_ERROR(s->Exec("BEGIN IMMEDIATE"));
      absl::Status built = s->BuildKeywordIndex(name);
      if (built.ok()) built = s->Exec("COMMIT");
      if (!built.ok()) {
        sqlite3_exec(s->db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return built;
      }
      s->keyword_indexes_built_.push_back(name);
    }
  }
  if (max_bytes > 0) {
    Statement page(s->db_, "PRAGMA page_size");
    const int64_t page_size = page.Step() == SQLITE_ROW ? page.ColInt(0) : 4096;
    const std::string pragma = absl::StrCat("PRAGMA max_page_count = ", std::max<int64_t>(1, max_bytes / page_size));
    QRAG_RETURN_IF_ERROR(s->Exec(pragma.c_str()));
  }
  // journal_mode=WAL silently stays "delete" on a read-only database: check we really are in WAL.
  Statement st(s->db_, "PRAGMA journal_mode");
  if (st.Step() != SQLITE_ROW || st.ColText(0) != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(path, ": cannot switch the database to WAL mode"));
  }
  return s;
}

absl::Status SqliteDocumentStore::BuildKeywordIndex(const std::string& collection) {
  const std::string table = FtsTable(collection);
  const std::string content = FtsContent(collection);
  // The view names the collection as a literal: names are [A-Za-z0-9_.-], so no quote can end it.
  const std::string view = absl::StrCat("CREATE VIEW IF NOT EXISTS ", content,
                                        " AS SELECT id, text FROM chunks WHERE collection = '", collection, "'");
  QRAG_RETURN_IF_ERROR(Exec(view.c_str()));
  const std::string create = absl::StrCat("CREATE VIRTUAL TABLE ", table, " USING fts5(text, content='",
                                          absl::StrReplaceAll(content, {{"'", "''"}}), "', content_rowid='id', "
                                          "tokenize='", kKeywordTokenizer, "')");
  QRAG_RETURN_IF_ERROR(Exec(create.c_str()));
  Statement fill(db_, absl::StrCat("INSERT INTO ", table, "(rowid, text) SELECT id, text FROM chunks "
                                   "WHERE collection = ?").c_str());
  if (fill.prepare_rc() != SQLITE_OK) return Error(fill.prepare_rc(), "prepare");
  fill.Text(1, collection);
  const int rc = fill.Step();
  if (rc != SQLITE_DONE) return Error(rc, "build the keyword index");
  return absl::OkStatus();
}

absl::Status SqliteDocumentStore::CreateCollection(const CollectionInfo& info) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
  Statement st(db_, "INSERT INTO collections(name, embedder, precision, dim, chunk_tokens, chunk_overlap, index_spec) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?)");
  if (st.prepare_rc() != SQLITE_OK) return Error(st.prepare_rc(), "prepare");
  st.Text(1, info.name);
  st.Text(2, info.embedder);
  st.Text(3, info.precision);
  st.Int(4, info.dim);
  st.Int(5, info.chunk_tokens);
  st.Int(6, info.chunk_overlap);
  st.Text(7, IndexSpecToJson(info.index));
  const int rc = st.Step();
  if (rc == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(absl::StrCat("collection '", info.name, "' already exists"));
  }
  if (rc != SQLITE_DONE) return Error(rc, "create collection");
  return BuildKeywordIndex(info.name);
  }();
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

absl::StatusOr<std::vector<CollectionInfo>> SqliteDocumentStore::ListCollections() {
  absl::MutexLock lock(&mu_);
  std::vector<CollectionInfo> out;
  Statement st(db_,
               "SELECT name, embedder, precision, dim, chunk_tokens, chunk_overlap, index_spec, "
               "(SELECT COUNT(*) FROM documents d WHERE d.collection = c.name), "
               "(SELECT COUNT(*) FROM chunks k WHERE k.collection = c.name) FROM collections c ORDER BY name");
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    CollectionInfo i;
    i.name = st.ColText(0);
    i.embedder = st.ColText(1);
    i.precision = st.ColText(2);
    i.dim = static_cast<int>(st.ColInt(3));
    i.chunk_tokens = static_cast<int>(st.ColInt(4));
    i.chunk_overlap = static_cast<int>(st.ColInt(5));
    SetStoredIndexSpec(st.ColText(6), &i);
    i.documents = st.ColInt(7);
    i.chunks = st.ColInt(8);
    out.push_back(std::move(i));
  }
  if (rc != SQLITE_DONE) return Error(rc, "list collections");
  return out;
}

void DocumentStore::WaitForChange(absl::Duration timeout) { absl::SleepFor(timeout); }

absl::StatusOr<CollectionInfo> DocumentStore::GetCollection(const std::string& name) {
  QRAG_ASSIGN_OR_RETURN(std::vector<CollectionInfo> all, ListCollections());
  for (CollectionInfo& i : all) {
    if (i.name == name) return std::move(i);
  }
  return absl::NotFoundError(absl::StrCat("collection ", Echo(name), " does not exist"));
}

absl::Status SqliteDocumentStore::DropCollection(const std::string& name) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status s = [&]() -> absl::Status {
    Statement st(db_, "DELETE FROM collections WHERE name = ?");
    st.Text(1, name);
    const int rc = st.Step();
    if (rc != SQLITE_DONE) return Error(rc, "drop collection");
    if (sqlite3_changes(db_) == 0) {
      return absl::NotFoundError(absl::StrCat("collection ", Echo(name), " does not exist"));
    }
    QRAG_RETURN_IF_ERROR(Exec(absl::StrCat("DROP TABLE IF EXISTS ", FtsTable(name)).c_str()));
    return Exec(absl::StrCat("DROP VIEW IF EXISTS ", FtsContent(name)).c_str());
  }();
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

absl::Status SqliteDocumentStore::UpsertDocuments(const std::string& collection, absl::Span<const StoredDocument> docs,
                                            std::vector<std::vector<int64_t>>* added, std::vector<int64_t>* removed,
                                            int64_t* replaced) {
  absl::MutexLock lock(&mu_);
  {
    Statement exists(db_, "SELECT 1 FROM collections WHERE name = ?");
    exists.Text(1, collection);
    if (exists.Step() != SQLITE_ROW) return absl::NotFoundError(absl::StrCat("collection ", Echo(collection), " does not exist"));
  }
  QRAG_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  std::vector<std::vector<int64_t>> new_ids;
  std::vector<int64_t> old_ids;
  int64_t replaced_docs = 0;
  auto body = [&]() -> absl::Status {
    Statement old_chunks(db_, "SELECT id, text FROM chunks WHERE collection = ? AND doc_id = ?");
    Statement del(db_, "DELETE FROM documents WHERE collection = ? AND doc_id = ?");
    Statement ins_doc(db_, "INSERT INTO documents(collection, doc_id, text, metadata) VALUES(?, ?, ?, ?)");
    Statement ins_chunk(db_, "INSERT INTO chunks(collection, doc_id, seq, text, embedding) VALUES(?, ?, ?, ?, ?)");
    const std::string fts = FtsTable(collection);
    Statement fts_del(db_, absl::StrCat("INSERT INTO ", fts, "(", fts, ", rowid, text) VALUES('delete', ?, ?)").c_str());
    Statement fts_ins(db_, absl::StrCat("INSERT INTO ", fts, "(rowid, text) VALUES(?, ?)").c_str());
    for (Statement* s : {&old_chunks, &del, &ins_doc, &ins_chunk, &fts_del, &fts_ins}) {
      if (s->prepare_rc() != SQLITE_OK) return Error(s->prepare_rc(), "prepare");
    }
    for (const StoredDocument& d : docs) {
      const char* failed = nullptr;
      int rc = UnindexChunks(old_chunks, fts_del, collection, d.id, &old_ids, &failed);
      if (rc != SQLITE_OK) return Error(rc, failed);
      del.Text(1, collection);
      del.Text(2, d.id);
      if ((rc = del.Step()) != SQLITE_DONE) return Error(rc, "delete old document");
      replaced_docs += sqlite3_changes(db_) > 0;
      del.Reset();
      ins_doc.Text(1, collection);
      ins_doc.Text(2, d.id);
      ins_doc.Text(3, d.text);
      ins_doc.Text(4, MetadataToJson(d.metadata));
      if ((rc = ins_doc.Step()) != SQLITE_DONE) return Error(rc, "insert document");
      ins_doc.Reset();
      std::vector<int64_t> ids;
      for (size_t c = 0; c < d.chunks.size(); ++c) {
        ins_chunk.Text(1, collection);
        ins_chunk.Text(2, d.id);
        ins_chunk.Int(3, static_cast<int64_t>(c));
        ins_chunk.Text(4, d.chunks[c].text);
        ins_chunk.Blob(5, d.chunks[c].embedding.data(), d.chunks[c].embedding.size() * sizeof(float));
        if ((rc = ins_chunk.Step()) != SQLITE_DONE) return Error(rc, "insert chunk");
        ins_chunk.Reset();
        const int64_t id = sqlite3_last_insert_rowid(db_);
        ids.push_back(id);
        fts_ins.Int(1, id);
        fts_ins.Text(2, d.chunks[c].text);
        if ((rc = fts_ins.Step()) != SQLITE_DONE) return Error(rc, "index chunk");
        fts_ins.Reset();
      }
      new_ids.push_back(std::move(ids));
    }
    return absl::OkStatus();
  };
  absl::Status s = body();
  if (s.ok()) {
    s = Exec("COMMIT");
  }
  if (!s.ok()) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  }
  for (auto& ids : new_ids) added->push_back(std::move(ids));
  *replaced = replaced_docs;
  removed->insert(removed->end(), old_ids.begin(), old_ids.end());
  return absl::OkStatus();
}

absl::Status SqliteDocumentStore::DeleteDocuments(const std::string& collection, absl::Span<const std::string> ids,
                                            int64_t* deleted, std::vector<int64_t>* removed) {
  absl::MutexLock lock(&mu_);
  {
    Statement exists(db_, "SELECT 1 FROM collections WHERE name = ?");
    exists.Text(1, collection);
    if (exists.Step() != SQLITE_ROW) return absl::NotFoundError(absl::StrCat("collection ", Echo(collection), " does not exist"));
  }
  QRAG_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  int64_t count = 0;
  std::vector<int64_t> old_ids;
  auto body = [&]() -> absl::Status {
    Statement old_chunks(db_, "SELECT id, text FROM chunks WHERE collection = ? AND doc_id = ?");
    Statement del(db_, "DELETE FROM documents WHERE collection = ? AND doc_id = ?");
    const std::string fts = FtsTable(collection);
    Statement fts_del(db_, absl::StrCat("INSERT INTO ", fts, "(", fts, ", rowid, text) VALUES('delete', ?, ?)").c_str());
    for (Statement* s : {&old_chunks, &del, &fts_del}) {
      if (s->prepare_rc() != SQLITE_OK) return Error(s->prepare_rc(), "prepare");
    }
    for (const std::string& id : ids) {
      const char* failed = nullptr;
      int rc = UnindexChunks(old_chunks, fts_del, collection, id, &old_ids, &failed);
      if (rc != SQLITE_OK) return Error(rc, failed);
      del.Text(1, collection);
      del.Text(2, id);
      if ((rc = del.Step()) != SQLITE_DONE) return Error(rc, "delete document");
      count += sqlite3_changes(db_);
      del.Reset();
    }
    return absl::OkStatus();
  };
  absl::Status s = body();
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  }
  *deleted = count;
  removed->insert(removed->end(), old_ids.begin(), old_ids.end());
  return absl::OkStatus();
}

absl::Status SqliteDocumentStore::ForEachChunk(
    const std::string& collection, const std::function<void(int64_t, const std::string&, absl::Span<const float>)>& fn) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT id, doc_id, embedding FROM chunks WHERE collection = ? ORDER BY id");
  st.Text(1, collection);
  int rc;
  std::vector<float> v;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const int bytes = sqlite3_column_bytes(st.get(), 2);
    v.resize(bytes / sizeof(float));
    if (bytes > 0) std::memcpy(v.data(), sqlite3_column_blob(st.get(), 2), v.size() * sizeof(float));
    fn(st.ColInt(0), st.ColText(1), v);
  }
  if (rc != SQLITE_DONE) return Error(rc, "read chunks");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ChunkRecord>> SqliteDocumentStore::GetChunks(absl::Span<const int64_t> ids) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "SELECT k.doc_id, k.seq, k.text, d.metadata FROM chunks k JOIN documents d "
               "ON d.collection = k.collection AND d.doc_id = k.doc_id WHERE k.id = ?");
  std::vector<ChunkRecord> out;
  for (int64_t id : ids) {
    st.Int(1, id);
    const int rc = st.Step();
    if (rc == SQLITE_ROW) {
      ChunkRecord r;
      r.id = id;
      r.document_id = st.ColText(0);
      r.seq = static_cast<int>(st.ColInt(1));
      r.text = st.ColText(2);
      QRAG_ASSIGN_OR_RETURN(r.metadata, MetadataFromJson(st.ColText(3)));
      out.push_back(std::move(r));
    } else if (rc != SQLITE_DONE) {
      return Error(rc, "read chunk");
    }
    st.Reset();
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SqliteDocumentStore::FindDocuments(const std::string& collection,
                                                                      const Metadata& filter) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT doc_id, metadata FROM documents WHERE collection = ?");
  st.Text(1, collection);
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    QRAG_ASSIGN_OR_RETURN(Metadata m, MetadataFromJson(st.ColText(1)));
    bool match = true;
    for (const auto& [k, v] : filter) {
      auto it = m.find(k);
      if (it == m.end() || it->second != v) {
        match = false;
        break;
      }
    }
    if (match) out.push_back(st.ColText(0));
  }
  if (rc != SQLITE_DONE) return Error(rc, "read documents");
  return out;
}

void SetStoredIndexSpec(const std::string& json, CollectionInfo* info) {
  absl::StatusOr<IndexSpec> index = IndexSpecFromJson(json);
  if (index.ok()) {
    info->index = *index;
  } else {  // never lose a collection over it: exact search is always correct
    info->index_status = absl::StrCat(index.status().message(), "; searching exactly");
  }
}

int SearchFts5(sqlite3* db, const std::string& table, const std::string& match, int limit,
               const std::function<bool(int64_t)>& keep, std::vector<DocumentStore::KeywordHit>* out,
               const char** failed) {
  // bm25() ascending is best first; ties by rowid for a stable order.
  // Without `keep`, SQLite stops at the limit; with it, the matches are filtered here first.
  const std::string bound = !keep && limit > 0 ? absl::StrCat(" LIMIT ", limit) : "";
  Statement st(db, absl::StrCat("SELECT rowid, bm25(", table, ") AS s FROM ", table, " WHERE ", table,
                                " MATCH ? ORDER BY s, rowid", bound).c_str());
  if (st.prepare_rc() != SQLITE_OK) {
    *failed = "prepare keyword search";
    return st.prepare_rc();
  }
  st.Text(1, match);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    const int64_t id = st.ColInt(0);
    if (keep && !keep(id)) continue;
    out->push_back({id, static_cast<float>(-sqlite3_column_double(st.get(), 1))});
    if (limit > 0 && static_cast<int>(out->size()) >= limit) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    *failed = "keyword search";
    return rc;
  }
  return SQLITE_OK;
}

absl::StatusOr<std::vector<DocumentStore::KeywordHit>> SqliteDocumentStore::KeywordSearch(
    const std::string& collection, const std::string& query, int limit, const std::function<bool(int64_t)>& keep) {
  std::vector<KeywordHit> out;
  const std::string match = KeywordMatchQuery(query);
  if (match.empty()) return out;
  absl::MutexLock lock(&mu_);
  const char* failed = nullptr;
  if (const int rc = SearchFts5(db_, FtsTable(collection), match, limit, keep, &out, &failed); rc != SQLITE_OK) {
    return Error(rc, failed);
  }
  return out;
}

absl::StatusOr<bool> SqliteDocumentStore::HasDocument(const std::string& collection, const std::string& id) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT 1 FROM documents WHERE collection = ? AND doc_id = ?");
  st.Text(1, collection);
  st.Text(2, id);
  const int rc = st.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Error(rc, "read document");
}

}  // namespace qrag::rag
