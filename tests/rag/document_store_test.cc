// The SQLite document store: what a committed call wrote is there after reopening; failures leave nothing
// half-written and map to the documented codes; and the chunker and prompt builder.
#include "server/rag/document_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "server/rag/prompt_builder.h"
#include "tests/rag/store_test_util.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

CollectionInfo Info(const std::string& name) { return TestCollection(name); }

StoredDocument Doc(const std::string& id, int chunks, float base) {
  StoredDocument d;
  d.id = id;
  d.text = "text of " + id;
  d.metadata = {{"source", id + ".txt"}};
  for (int c = 0; c < chunks; ++c) d.chunks.push_back({"chunk " + std::to_string(c), {base, float(c), 1.0f}});
  return d;
}

TEST(DocumentStore, CommittedWrites_SurviveReopen_UpsertReplaces_DeleteRemoves) {
  TempDir tmp;
  const std::string path = tmp.Join("rag.sqlite");
  std::vector<int64_t> first_ids;
  {
    auto s = DocumentStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
    EXPECT_THAT((*s)->CreateCollection(Info("c")), StatusIsCode(absl::StatusCode::kAlreadyExists));
    std::vector<std::vector<int64_t>> added;
    std::vector<int64_t> removed;
    int64_t replaced = -1;
    ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("a", 2, 1), Doc("b", 1, 2)}, &added, &removed, &replaced).ok());
    ASSERT_EQ(added.size(), 2u);
    EXPECT_EQ(added[0].size(), 2u);
    EXPECT_TRUE(removed.empty());
    EXPECT_EQ(replaced, 0);
    first_ids = added[0];
    // Upsert "a" with one chunk: its two old chunks go.
    added.clear();
    ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("a", 1, 5)}, &added, &removed, &replaced).ok());
    EXPECT_EQ(removed, first_ids);
    EXPECT_EQ(replaced, 1);
    EXPECT_THAT((*s)->UpsertDocuments("nope", {Doc("x", 1, 1)}, &added, &removed, &replaced),
                StatusIsCode(absl::StatusCode::kNotFound));
  }
  auto s = DocumentStore::Open(path);
  ASSERT_TRUE(s.ok());
  auto list = (*s)->ListCollections().value();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].documents, 2);
  EXPECT_EQ(list[0].chunks, 2);
  std::map<std::string, int> per_doc;
  ASSERT_TRUE((*s)->ForEachChunk("c", [&](int64_t, const std::string& doc, absl::Span<const float> v) {
                     per_doc[doc]++;
                     EXPECT_EQ(v.size(), 3u);
                     if (doc == "a") EXPECT_EQ(v[0], 5.0f);
                   }).ok());
  EXPECT_EQ(per_doc["a"], 1);
  EXPECT_EQ(per_doc["b"], 1);
  auto found = (*s)->FindDocuments("c", {{"source", "b.txt"}});
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, std::vector<std::string>{"b"});
  int64_t deleted = 0;
  std::vector<int64_t> removed;
  ASSERT_TRUE((*s)->DeleteDocuments("c", {"b", "missing"}, &deleted, &removed).ok());
  EXPECT_EQ(deleted, 1);
  EXPECT_EQ(removed.size(), 1u);
  EXPECT_FALSE(*(*s)->HasDocument("c", "b"));
  ASSERT_TRUE((*s)->DropCollection("c").ok());
  EXPECT_THAT((*s)->DropCollection("c"), StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_TRUE((*s)->ListCollections().value().empty());
}

TEST(DocumentStore, SizeCapReached_ResourceExhausted_NothingOfTheBatchStored) {
  TempDir tmp;
  auto s = DocumentStore::Open(tmp.Join("rag.sqlite"), 64 << 10);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  int64_t replaced;
  ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("small", 1, 1)}, &added, &removed, &replaced).ok());
  StoredDocument big = Doc("big", 1, 1);
  big.text.assign(256 << 10, 'x');
  EXPECT_THAT((*s)->UpsertDocuments("c", {Doc("other", 1, 1), big}, &added, &removed, &replaced),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("full")));
  EXPECT_TRUE(*(*s)->HasDocument("c", "small"));
  EXPECT_FALSE(*(*s)->HasDocument("c", "other"));  // rolled back with the batch
  // Still usable afterwards.
  EXPECT_TRUE((*s)->UpsertDocuments("c", {Doc("after", 1, 1)}, &added, &removed, &replaced).ok());
}

TEST(DocumentStore, IndexSpec_StoredWithTheCollection_OldDatabaseMigrated_CorruptSpecReadsAsExact) {
  TempDir tmp;
  const std::string path = tmp.Join("rag.sqlite");
  {  // a database of the schema before collections chose their index
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE collections(name TEXT PRIMARY KEY, embedder TEXT NOT NULL, precision TEXT NOT "
                           "NULL, dim INTEGER NOT NULL, chunk_tokens INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL);"
                           "INSERT INTO collections VALUES('old', 'test@0', 'fp32', 3, 16, 2);",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto s = DocumentStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    CollectionInfo hnsw = Info("h");
    hnsw.index = *ResolveIndexSpec({.kind = IndexKind::kHnsw, .hnsw_ef_search = 40});
    ASSERT_TRUE((*s)->CreateCollection(hnsw).ok());
    CollectionInfo ivf = Info("i");
    ivf.index = *ResolveIndexSpec({.kind = IndexKind::kIvf, .ivf_nlist = 10});
    ASSERT_TRUE((*s)->CreateCollection(ivf).ok());
  }
  auto s = DocumentStore::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto list = (*s)->ListCollections().value();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "h");
  EXPECT_EQ(list[0].index.kind, IndexKind::kHnsw);
  EXPECT_EQ(list[0].index.hnsw_ef_search, 40);
  EXPECT_EQ(list[0].index.hnsw_m, kDefaultHnswM);
  EXPECT_EQ(list[1].index.kind, IndexKind::kIvf);
  EXPECT_EQ(list[1].index.ivf_nlist, 10);
  EXPECT_EQ(list[1].index.ivf_nprobe, 10);
  EXPECT_EQ(list[2].name, "old");
  EXPECT_EQ(list[2].index.kind, IndexKind::kExact) << "collections made before the choice are exact";
  EXPECT_TRUE(list[2].index_status.empty());
  s->reset();
  {  // a damaged spec: the collection stays usable (exact) and its status says why
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE collections SET index_spec = '{\"kind\":\"hnsw\",\"hnsw_m\":1}' WHERE name = 'h'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  s = DocumentStore::Open(path);
  ASSERT_TRUE(s.ok());
  list = (*s)->ListCollections().value();
  EXPECT_EQ(list[0].index.kind, IndexKind::kExact);
  EXPECT_THAT(list[0].index_status, HasSubstr("hnsw_m must be in [4, 128]"));
  EXPECT_THAT(list[0].index_status, HasSubstr("searching exactly"));
}

StoredDocument TextDoc(const std::string& id, std::vector<std::string> chunk_texts) {
  StoredDocument d;
  d.id = id;
  d.text = id;
  for (std::string& t : chunk_texts) d.chunks.push_back({std::move(t), {1.0f, 0.0f, 0.0f}});
  return d;
}

// Whether a collection's keyword index holds exactly what a rebuild from its chunks gives: every (word,
// chunk, position) of FTS5's vocabulary of the index, against one built afresh (then rolled back). "OK", or
// what differs.
std::string KeywordIndexIntegrity(const std::string& path, const std::string& collection) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return "cannot open";
  auto exec = [&](const std::string& sql) -> std::string {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string out = rc == SQLITE_OK ? "" : (err != nullptr ? err : "error");
    sqlite3_free(err);
    return out;
  };
  std::string out = exec("BEGIN");
  const std::string steps[] = {
      "CREATE VIRTUAL TABLE fresh USING fts5(text, content='chunks:" + collection +
          "', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
      "INSERT INTO fresh(fresh) VALUES('rebuild')",
      "CREATE VIRTUAL TABLE temp.v_kept USING fts5vocab(main, 'fts:" + collection + "', instance)",
      "CREATE VIRTUAL TABLE temp.v_fresh USING fts5vocab(main, 'fresh', instance)"};
  for (const std::string& step : steps) {
    if (out.empty()) out = exec(step);
  }
  if (out.empty()) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT (SELECT COUNT(*) FROM (SELECT * FROM v_kept EXCEPT SELECT * FROM v_fresh)), "
                       "(SELECT COUNT(*) FROM (SELECT * FROM v_fresh EXCEPT SELECT * FROM v_kept)), "
                       "(SELECT COUNT(*) FROM v_fresh)",
                       -1, &st, nullptr);
    if (sqlite3_step(st) == SQLITE_ROW) {
      const int64_t extra = sqlite3_column_int64(st, 0), missing = sqlite3_column_int64(st, 1);
      out = extra == 0 && missing == 0 ? "OK"
                                       : "index has " + std::to_string(extra) + " word instances too many, " +
                                             std::to_string(missing) + " missing (of " +
                                             std::to_string(sqlite3_column_int64(st, 2)) + ")";
    } else {
      out = sqlite3_errmsg(db);
    }
    sqlite3_finalize(st);
  }
  exec("DROP TABLE temp.v_kept");
  exec("DROP TABLE temp.v_fresh");
  exec("ROLLBACK");
  sqlite3_close(db);
  return out;
}

std::vector<std::string> KeywordDocs(DocumentStore& s, const std::string& collection, const std::string& query,
                                     int limit = 0) {
  auto hits = s.KeywordSearch(collection, query, limit);
  EXPECT_TRUE(hits.ok()) << hits.status();
  std::vector<int64_t> ids;
  for (const auto& h : *hits) {
    EXPECT_GT(h.bm25, 0.0f);
    ids.push_back(h.id);
  }
  std::vector<std::string> docs;
  auto records = s.GetChunks(ids);
  EXPECT_TRUE(records.ok()) << records.status();
  for (const ChunkRecord& r : *records) docs.push_back(r.document_id + "#" + std::to_string(r.seq));
  return docs;
}

TEST(DocumentStore, KeywordIndex_FollowsUpsertDeleteDrop_RanksByBm25_StemsAndFolds) {
  TempDir tmp;
  const std::string path = tmp.Join("rag.sqlite");
  auto s = DocumentStore::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
  ASSERT_TRUE((*s)->CreateCollection(Info("other")).ok());
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  int64_t replaced;
  ASSERT_TRUE((*s)->UpsertDocuments("c",
                                    {TextDoc("cats", {"Cats chase mice in the barn.", "The barn is red."}),
                                     TextDoc("dogs", {"Dogs chase cats and cats chase dogs, cats everywhere."}),
                                     TextDoc("cafe", {"Un CAFÉ crème, s'il vous plaît."})},
                                    &added, &removed, &replaced)
                  .ok());
  ASSERT_TRUE((*s)->UpsertDocuments("other", {TextDoc("x", {"cats only here"})}, &added, &removed, &replaced).ok());
  // BM25: "cats" three times in a short chunk beats once; the other collection is not searched.
  EXPECT_THAT(KeywordDocs(**s, "c", "cats"), ::testing::ElementsAre("dogs#0", "cats#0"));
  // Any word matches (OR); stemming ("chasing" ~ "chase"), case and accents folded ("cafe" ~ "CAFÉ").
  EXPECT_THAT(KeywordDocs(**s, "c", "chasing"), ::testing::UnorderedElementsAre("dogs#0", "cats#0"));
  EXPECT_THAT(KeywordDocs(**s, "c", "cafe"), ::testing::ElementsAre("cafe#0"));
  EXPECT_THAT(KeywordDocs(**s, "c", "red zebra"), ::testing::ElementsAre("cats#1"));
  EXPECT_THAT(KeywordDocs(**s, "c", "cats", 1), ::testing::ElementsAre("dogs#0"));
  // Query syntax is never interpreted: FTS5 operators, quotes, column filters and stars are plain words.
  for (const char* q : {"\"", "cats\" OR \"", "NEAR(cats mice)", "text:cats", "cat*", "-cats", "AND OR NOT", "^cats",
                        "{text}: cats", "((", "cats AND"}) {
    auto hits = (*s)->KeywordSearch("c", q, 0);
    EXPECT_TRUE(hits.ok()) << q << ": " << hits.status();
  }
  EXPECT_TRUE((*s)->KeywordSearch("c", "?!  ...", 0)->empty());  // no word: nothing
  EXPECT_THAT(KeywordDocs(**s, "c", "AND"), ::testing::ElementsAre("dogs#0"));  // the word "and", not an operator
  // Upsert replaces the old words; delete removes them; the index stays consistent with the chunks.
  ASSERT_TRUE((*s)->UpsertDocuments("c", {TextDoc("dogs", {"Dogs sleep all day."})}, &added, &removed, &replaced).ok());
  EXPECT_THAT(KeywordDocs(**s, "c", "cats"), ::testing::ElementsAre("cats#0"));
  EXPECT_THAT(KeywordDocs(**s, "c", "sleep"), ::testing::ElementsAre("dogs#0"));
  int64_t deleted = 0;
  ASSERT_TRUE((*s)->DeleteDocuments("c", {"cats"}, &deleted, &removed).ok());
  EXPECT_THAT(KeywordDocs(**s, "c", "cats barn"), ::testing::IsEmpty());
  EXPECT_EQ(KeywordIndexIntegrity(path, "c"), "OK");
  EXPECT_EQ(KeywordIndexIntegrity(path, "other"), "OK");
  // Drop removes the index with the collection; a collection of the same name starts empty.
  ASSERT_TRUE((*s)->DropCollection("c").ok());
  ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
  EXPECT_THAT(KeywordDocs(**s, "c", "sleep dogs"), ::testing::IsEmpty());
  EXPECT_EQ(KeywordIndexIntegrity(path, "c"), "OK");
  // A failed batch leaves no words behind (rolled back with its chunks).
  StoredDocument big = TextDoc("big", {"unicorns"});
  EXPECT_THAT((*s)->UpsertDocuments("nope", {big}, &added, &removed, &replaced), StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(KeywordDocs(**s, "c", "unicorns"), ::testing::IsEmpty());
  EXPECT_EQ(KeywordIndexIntegrity(path, "c"), "OK");
  {  // the check can fail: a chunk written behind the store's back is missing from the index
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "INSERT INTO documents VALUES('c', 'ghost', 'g', '{}');"
                           "INSERT INTO chunks(collection, doc_id, seq, text, embedding) "
                           "VALUES('c', 'ghost', 0, 'ghost words', x'00')",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  EXPECT_THAT(KeywordIndexIntegrity(path, "c"), HasSubstr("0 word instances too many, 2 missing"));
}

TEST(DocumentStore, KeywordIndex_DatabaseFromBefore_BuiltAtOpen) {
  TempDir tmp;
  const std::string path = tmp.Join("rag.sqlite");
  {
    auto s = DocumentStore::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateCollection(Info("old")).ok());
    std::vector<std::vector<int64_t>> added;
    std::vector<int64_t> removed;
    int64_t replaced;
    ASSERT_TRUE((*s)->UpsertDocuments("old", {TextDoc("a", {"alpine goats"}), TextDoc("b", {"night trains"})},
                                      &added, &removed, &replaced)
                    .ok());
    EXPECT_TRUE((*s)->keyword_indexes_built().empty());
  }
  {  // as a database written before the keyword index existed: no FTS table
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "DROP TABLE \"fts:old\"; DROP VIEW \"chunks:old\"", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = DocumentStore::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT((*s)->keyword_indexes_built(), ::testing::ElementsAre("old"));
  EXPECT_THAT(KeywordDocs(**s, "old", "trains"), ::testing::ElementsAre("b#0"));
  EXPECT_EQ(KeywordIndexIntegrity(path, "old"), "OK");
  s->reset();
  s = DocumentStore::Open(path);
  EXPECT_TRUE((*s)->keyword_indexes_built().empty());  // once
}

TEST(DocumentStore, UncreatablePath_FailedPrecondition) {
  TempDir tmp;
  ::qrag::testing::WriteFile(tmp.Join("file"), "x");
  EXPECT_THAT(DocumentStore::Open(tmp.Join("file/rag.sqlite")), StatusIsCode(absl::StatusCode::kFailedPrecondition));
}

TEST(DocumentStore, ReadOnlyDirectory_FailedPrecondition) {
  TempDir tmp;
  if (geteuid() == 0) GTEST_SKIP() << "running as root: file permissions do not make a directory read-only";
  std::filesystem::create_directory(tmp.Join("ro"));
  {
    auto s = DocumentStore::Open(tmp.Join("ro/rag.sqlite"));
    ASSERT_TRUE(s.ok());
  }
  std::filesystem::permissions(tmp.Join("ro"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  std::filesystem::permissions(tmp.Join("ro/rag.sqlite"), std::filesystem::perms::owner_read);
  auto s = DocumentStore::Open(tmp.Join("ro/rag.sqlite"));
  if (s.ok()) {
    EXPECT_THAT((*s)->CreateCollection(Info("c")), StatusIsCode(absl::StatusCode::kFailedPrecondition));
  } else {
    EXPECT_THAT(s, StatusIsCode(absl::StatusCode::kFailedPrecondition));
  }
  std::filesystem::permissions(tmp.Join("ro"), std::filesystem::perms::owner_all);
}

TEST(PromptBuilder, DefaultTemplate_NumberedPassagesThenQuestion) {
  auto p = BuildRagPrompt("Who?", {"first {question}", "second"}, "");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "Context:\n[1] first {question}\n[2] second\n\nQuestion: Who?\nAnswer:");
  EXPECT_EQ(*BuildRagPrompt("Q", {"a"}, "{question} / {context}"), "Q / [1] a");
  EXPECT_THAT(BuildRagPrompt("Q", {"a"}, "no placeholder"), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace qrag::rag
