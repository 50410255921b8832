// The SQLite document store: what a committed call wrote is there after reopening; failures leave nothing
// half-written and map to the documented codes; and the chunker and prompt builder.
#include "server/rag/document_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "server/rag/prompt_builder.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

CollectionInfo Info(const std::string& name) {
  CollectionInfo i;
  i.name = name;
  i.embedder = "test@0";
  i.precision = "fp32";
  i.dim = 3;
  i.chunk_tokens = 16;
  i.chunk_overlap = 2;
  return i;
}

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
  auto list = (*s)->ListCollections();
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
  EXPECT_TRUE((*s)->ListCollections().empty());
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
  auto list = (*s)->ListCollections();
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
  list = (*s)->ListCollections();
  EXPECT_EQ(list[0].index.kind, IndexKind::kExact);
  EXPECT_THAT(list[0].index_status, HasSubstr("hnsw_m must be in [4, 128]"));
  EXPECT_THAT(list[0].index_status, HasSubstr("searching exactly"));
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
