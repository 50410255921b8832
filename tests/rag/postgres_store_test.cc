// The PostgreSQL document store against a real PostgreSQL server (Debian's package, started by
// tests/postgres.sh in a temporary directory): the DocumentStore contract on both stores side by side (the
// same calls give the same answers, keyword search ranks alike), the change log, two stores (replicas) on one
// database, and the failure behaviour: an unreachable database, a server stopped mid-use and back.
#include "server/rag/postgres_store.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/rag/document_store.h"
#include "tests/rag/postgres_server.h"
#include "tests/rag/store_test_util.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

CollectionInfo Info(const std::string& name) { return TestCollection(name); }

StoredDocument Doc(const std::string& id, std::vector<std::string> chunks, float base,
                   Metadata metadata = {}) {
  StoredDocument d;
  d.id = id;
  d.text = "text of " + id;
  d.metadata = metadata.empty() ? Metadata{{"source", id + ".txt"}} : std::move(metadata);
  for (size_t c = 0; c < chunks.size(); ++c) d.chunks.push_back({chunks[c], {base, float(c), 1.0f}});
  return d;
}

// The same sequence of calls on a store; returns a transcript of everything observable (chunk ids mapped to
// (document, seq), since ids differ between stores), so that two stores can be compared.
void Transcript(DocumentStore& s, std::string& t) {
  auto note = [&](const absl::Status& st) { absl::StrAppend(&t, absl::StatusCodeToString(st.code()), ";"); };
  note(s.CreateCollection(Info("c")));
  note(s.CreateCollection(Info("c")));  // ALREADY_EXISTS
  note(s.CreateCollection(Info("other")));
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  int64_t replaced = -1;
  note(s.UpsertDocuments("c",
                         {Doc("a", {"the quick brown fox jumps", "over the lazy dog"}, 1, {{"lang", "en"}}),
                          Doc("b", {"foxes are running quickly"}, 2, {{"lang", "en"}, {"year", "2024"}}),
                          Doc("é", {"un renard brun très rapide"}, 3, {{"lang", "fr"}})},
                         &added, &removed, &replaced));
  absl::StrAppend(&t, "added ", added.size(), " replaced ", replaced, " removed ", removed.size(), ";");
  note(s.UpsertDocuments("missing", {Doc("x", {"x"}, 0)}, &added, &removed, &replaced));  // NOT_FOUND
  // Replace "a": its two chunks go, one comes.
  std::vector<std::vector<int64_t>> added2;
  std::vector<int64_t> removed2;
  note(s.UpsertDocuments("c", {Doc("a", {"a fox, replaced"}, 5, {{"lang", "en"}})}, &added2, &removed2, &replaced));
  absl::StrAppend(&t, "replaced ", replaced, " removed-old-a ", removed2 == added[0], ";");
  auto chunks = s.GetChunks({added2[0][0], added[1][0], 999999, added[2][0]});
  note(chunks.status());
  for (const ChunkRecord& c : *chunks) {
    absl::StrAppend(&t, c.document_id, "/", c.seq, ":", c.text, ":", MetadataToJson(c.metadata), ";");
  }
  auto en = s.FindDocuments("c", {{"lang", "en"}});
  absl::StrAppend(&t, "en=", absl::StrJoin(*en, ","), ";");
  auto en2024 = s.FindDocuments("c", {{"lang", "en"}, {"year", "2024"}});
  absl::StrAppend(&t, "en2024=", absl::StrJoin(*en2024, ","), ";");
  absl::StrAppend(&t, "has b ", *s.HasDocument("c", "b"), " has z ", *s.HasDocument("c", "z"), ";");
  auto hits = s.KeywordSearch("c", "FOX running", 10);
  note(hits.status());
  for (const auto& h : *hits) {
    auto r = s.GetChunks({h.id});
    ASSERT_TRUE(r.ok() && r->size() == 1) << "keyword hit " << h.id << " resolves to no chunk: " << t;
    absl::StrAppend(&t, "kw ", (*r)[0].document_id, " ", absl::StrFormat("%.5f", h.bm25), ";");
  }
  absl::StrAppend(&t, "kw-none ", s.KeywordSearch("c", "  ,, ", 10)->size(), ";");
  absl::StrAppend(&t, "kw-accents ", s.KeywordSearch("c", "TRES", 10)->size(), ";");
  int64_t deleted = -1;
  std::vector<int64_t> gone;
  note(s.DeleteDocuments("c", {"b", "nope"}, &deleted, &gone));
  absl::StrAppend(&t, "deleted ", deleted, " chunks ", gone.size(), ";");
  absl::StrAppend(&t, "kw-after-delete ", s.KeywordSearch("c", "running", 10)->size(), ";");
  std::vector<std::string> seen;
  note(s.ForEachChunk("c", [&](int64_t, const std::string& doc, absl::Span<const float> v) {
    seen.push_back(absl::StrCat(doc, "[", v[0], ",", v[1], ",", v[2], "]"));
  }));
  absl::StrAppend(&t, "chunks ", absl::StrJoin(seen, " "), ";");
  auto listed = s.ListCollections();
  note(listed.status());
  for (const CollectionInfo& i : *listed) {
    absl::StrAppend(&t, i.name, " docs ", i.documents, " chunks ", i.chunks, " dim ", i.dim, ";");
  }
  note(s.DropCollection("other"));
  note(s.DropCollection("other"));  // NOT_FOUND
  absl::StrAppend(&t, "collections ", s.ListCollections()->size(), ";");
  note(s.GetCollection("other").status());
}

TEST(PostgresStore, SameTranscriptAsTheSqliteStore) {
  QRAG_START_POSTGRES(pg);
  TempDir tmp;
  auto sqlite = DocumentStore::Open(tmp.Join("rag.sqlite"));
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  auto postgres = OpenPostgresStore(pg.conninfo());
  ASSERT_TRUE(postgres.ok()) << postgres.status();
  EXPECT_TRUE((*postgres)->shared());
  EXPECT_FALSE((*sqlite)->shared());
  std::string want, got;
  Transcript(**sqlite, want);
  Transcript(**postgres, got);
  EXPECT_EQ(got, want);
  // The transcript is not trivially equal: it holds the observable results.
  EXPECT_THAT(want, HasSubstr("kw a "));
  EXPECT_THAT(want, HasSubstr("en2024=b;"));
  EXPECT_THAT(want, HasSubstr("kw-accents 1;"));
  EXPECT_THAT(want, HasSubstr("deleted 1 chunks 1;"));
}

TEST(PostgresStore, CommittedWrites_SeenByANewConnectionAndAnotherReplica_ChangeLogWritten) {
  QRAG_START_POSTGRES(pg);
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  int64_t replaced = 0;
  {
    auto s = OpenPostgresStore(pg.conninfo());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
    ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("a", {"alpha one", "alpha two"}, 1)}, &added, &removed, &replaced).ok());
  }
  // A second replica opening the same database: the schema is there (no error), the data too, with the same
  // chunk ids, and its keyword index was loaded from the chunks.
  auto r2 = OpenPostgresStore(pg.conninfo());
  ASSERT_TRUE(r2.ok()) << r2.status();
  auto chunks = (*r2)->GetChunks(added[0]);
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  ASSERT_EQ(chunks->size(), 2u);
  EXPECT_EQ((*chunks)[1].text, "alpha two");
  auto hits = (*r2)->KeywordSearch("c", "alpha", 10);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 2u);
  // Its writes get new ids (one sequence for every replica).
  std::vector<std::vector<int64_t>> added2;
  ASSERT_TRUE((*r2)->UpsertDocuments("c", {Doc("b", {"beta"}, 2)}, &added2, &removed, &replaced).ok());
  EXPECT_GT(added2[0][0], added[0][1]);
  // The change log: create, upsert a, upsert b, in sequence order.
  EXPECT_EQ(pg.Value("SELECT string_agg(kind || ':' || coalesce(doc_id, ''), ',' ORDER BY seq) FROM qrag_changes"),
            "create:,upsert:a,upsert:b");
  EXPECT_EQ(pg.Value("SELECT max(version) FROM qrag_schema"), "1");
}

TEST(PostgresStore, ConcurrentUpsertsOfOneDocument_LastCommitWins_OneCopy) {
  QRAG_START_POSTGRES(pg);
  auto a = OpenPostgresStore(pg.conninfo());
  auto b = OpenPostgresStore(pg.conninfo());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->CreateCollection(Info("c")).ok());
  auto writer = [](DocumentStore* s, const std::string& tag) {
    for (int i = 0; i < 20; ++i) {
      std::vector<std::vector<int64_t>> added;
      std::vector<int64_t> removed;
      int64_t replaced = 0;
      const absl::Status st =
          s->UpsertDocuments("c", {Doc("same", {tag + " one", tag + " two"}, 1)}, &added, &removed, &replaced);
      ASSERT_TRUE(st.ok()) << st;
    }
  };
  std::thread t1(writer, a->get(), "first"), t2(writer, b->get(), "second");
  t1.join();
  t2.join();
  auto list = (*a)->ListCollections();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[0].documents, 1);
  EXPECT_EQ((*list)[0].chunks, 2);  // never both writers' chunks
  // The document holds the chunks of the last committed upsert, which the change log's last row names.
  const std::string last_text = pg.Value("SELECT text FROM qrag_chunks ORDER BY id DESC LIMIT 1");
  EXPECT_EQ(pg.Value("SELECT count(DISTINCT split_part(text, ' ', 1)) FROM qrag_chunks"), "1") << last_text;
  EXPECT_EQ(pg.Value("SELECT count(*) FROM qrag_changes WHERE kind = 'upsert'"), "40");
}

TEST(PostgresStore, Unreachable_Unavailable_NamingTheDatabase_NoPassword) {
  TempDir tmp;  // no server listens there
  auto s = OpenPostgresStore(absl::StrCat("postgresql://qrag:secret@/postgres?host=", tmp.path(),
                                          "&port=5439&connect_timeout=2"));
  EXPECT_THAT(s, StatusIsCode(absl::StatusCode::kUnavailable));
  EXPECT_THAT(s.status().message(), HasSubstr("cannot reach the PostgreSQL database postgresql://qrag@"));
  EXPECT_THAT(s.status().message(), ::testing::Not(HasSubstr("secret")));
  EXPECT_THAT(OpenPostgresStore("postgresql://[bad"), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(DescribePostgres("host=db.example port=6543 user=app dbname=docs password=hunter2"),
            "postgresql://app@db.example:6543/docs");
  EXPECT_TRUE(IsPostgresUrl("postgresql://x"));
  EXPECT_TRUE(IsPostgresUrl("postgres://x"));
  EXPECT_FALSE(IsPostgresUrl("/data/rag.sqlite"));
}

TEST(PostgresStore, ServerStoppedMidUse_Unavailable_NothingAcknowledgedLost_ReconnectsWhenBack) {
  QRAG_START_POSTGRES(pg);
  auto s = OpenPostgresStore(pg.conninfo());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->CreateCollection(Info("c")).ok());
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  int64_t replaced = 0;
  ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("kept", {"kept text"}, 1)}, &added, &removed, &replaced).ok());
  ASSERT_EQ(pg.Stop(), 0);
  absl::Status down = (*s)->UpsertDocuments("c", {Doc("lost", {"never stored"}, 2)}, &added, &removed, &replaced);
  EXPECT_THAT(down, StatusIsCode(absl::StatusCode::kUnavailable)) << down;
  EXPECT_THAT(down.message(), HasSubstr("nothing was stored"));
  EXPECT_THAT((*s)->ListCollections(), StatusIsCode(absl::StatusCode::kUnavailable));
  ASSERT_EQ(pg.Start(), 0);
  // The next call reconnects; what was acknowledged is there, the failed write is not.
  auto has_kept = (*s)->HasDocument("c", "kept");
  ASSERT_TRUE(has_kept.ok()) << has_kept.status();
  EXPECT_TRUE(*has_kept);
  EXPECT_FALSE(*(*s)->HasDocument("c", "lost"));
  EXPECT_EQ((*s)->KeywordSearch("c", "never", 10)->size(), 0u);
  ASSERT_TRUE((*s)->UpsertDocuments("c", {Doc("after", {"written after"}, 3)}, &added, &removed, &replaced).ok());
  EXPECT_EQ((*(*s)->ListCollections())[0].documents, 2);
}

TEST(PostgresStore, SchemaFromANewerServer_FailedPrecondition) {
  QRAG_START_POSTGRES(pg);
  ASSERT_TRUE(OpenPostgresStore(pg.conninfo()).ok());
  ASSERT_TRUE(pg.Exec("INSERT INTO qrag_schema(version) VALUES(99)"));
  auto s = OpenPostgresStore(pg.conninfo());
  EXPECT_THAT(s, StatusIsCode(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(s.status().message(), HasSubstr("version 99"));
}

}  // namespace
}  // namespace qrag::rag
