// Two replicas' Collections sharing one real PostgreSQL (tests/postgres.sh), on the real all-MiniLM-L6-v2
// encoder: what one replica writes (create, ingest, upsert, delete, drop) reaches the other's indexes through
// the change log, with identical retrieval results; a replica started later loads everything; a database
// stopped and started again mid-run loses nothing committed and the follower catches up.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/rag/collections.h"
#include "tests/model/minilm_fixture.h"
#include "tests/rag/postgres_server.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

using ::testing::HasSubstr;

// One replica: its own encoder backend, index backend and Collections.
struct Replica {
  backend::CpuBackend encoder_backend{backend::CpuBackendOptions{}};
  backend::CpuBackend index_backend{backend::CpuBackendOptions{}};
  std::unique_ptr<model::BertEncoder> encoder;
  std::unique_ptr<Collections> collections;
};

std::unique_ptr<Replica> StartReplica(const std::string& dir, const std::string& conninfo, absl::Status* status) {
  auto r = std::make_unique<Replica>();
  auto enc = model::BertEncoder::Load(dir, &r->encoder_backend, {});
  if (!enc.ok()) {
    *status = enc.status();
    return nullptr;
  }
  r->encoder = std::move(*enc);
  CollectionsOptions o;
  o.store = conninfo;
  o.max_document_bytes = 100000;
  auto c = Collections::Open(o, r->encoder.get(), &r->index_backend);
  if (!c.ok()) {
    *status = c.status();
    return nullptr;
  }
  r->collections = std::move(*c);
  return r;
}

// "doc#seq score" per hit, the scores to 4 places: what a client sees.
std::string Hits(Collections& c, const std::string& collection, const std::string& query,
                 SearchMode mode = SearchMode::kHybrid) {
  RetrieveTimings t;
  auto hits = c.Retrieve(collection, query, 3, -1.0f, {}, &t, RetrieveOptions{mode, false});
  if (!hits.ok()) return std::string(absl::StatusCodeToString(hits.status().code()));
  std::string out;
  for (const RetrievedChunk& h : *hits) {
    absl::StrAppendFormat(&out, "%s#%d %.4f; ", h.chunk.document_id, h.chunk.seq, h.score);
  }
  return out;
}

// Waits (at most a minute: a bound on a hang, not a timing assertion) until `done` holds.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

const std::vector<DocumentInput> kDocs = {
    {"cats", "Cats are small domesticated carnivorous mammals that purr and hunt mice.", {{"topic", "animals"}}},
    {"rust", "Rust is a systems programming language focused on memory safety without garbage collection.",
     {{"topic", "software"}}},
    {"paris", "Paris is the capital city of France, known for the Eiffel Tower.", {{"topic", "places"}}},
};

class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ::qrag::testing::MiniLmDir();
    if (!dir) {
      if (::qrag::testing::RequireShared()) FAIL() << "MiniLM weights missing (tests/fetch_minilm.sh)";
      GTEST_SKIP() << "MiniLM weights missing: run tests/fetch_minilm.sh or set QRAG_MINILM_DIR";
    }
    dir_ = *dir;
  }
  std::string dir_;
};

TEST_F(ReplicasTest, WritesThroughOneReplica_ReachTheOther_IdenticalResults_LateReplicaLoadsAll) {
  QRAG_START_POSTGRES(pg);
  absl::Status st;
  auto a = StartReplica(dir_, pg.conninfo(), &st);
  ASSERT_NE(a, nullptr) << st;
  auto b = StartReplica(dir_, pg.conninfo(), &st);
  ASSERT_NE(b, nullptr) << st;
  ASSERT_TRUE(a->collections->Create("kb", "", ChunkingOptions{}).ok());
  ASSERT_TRUE(a->collections->Ingest("kb", kDocs).ok());
  const std::string query = "which animal purrs?";
  const std::string want = Hits(*a->collections, "kb", query);
  ASSERT_THAT(want, HasSubstr("cats#0"));
  EXPECT_TRUE(Eventually([&] { return Hits(*b->collections, "kb", query) == want; }))
      << "b: " << Hits(*b->collections, "kb", query) << " a: " << want;
  EXPECT_EQ(Hits(*b->collections, "kb", "Eiffel", SearchMode::kBm25), Hits(*a->collections, "kb", "Eiffel", SearchMode::kBm25));
  EXPECT_GE(b->collections->index_lag_seconds(), 0.0);

  // An upsert and a delete through b reach a.
  ASSERT_TRUE(b->collections->Ingest("kb", {{"cats", "Dogs bark at the mail carrier every morning.", {}}}).ok());
  ASSERT_TRUE(b->collections->Delete("kb", {"paris"}).ok());
  const std::string after = Hits(*b->collections, "kb", "a dog barking");
  ASSERT_THAT(after, HasSubstr("cats#0"));
  EXPECT_THAT(after, ::testing::Not(HasSubstr("paris")));
  EXPECT_TRUE(Eventually([&] { return Hits(*a->collections, "kb", "a dog barking") == after; }))
      << "a: " << Hits(*a->collections, "kb", "a dog barking") << " b: " << after;
  EXPECT_TRUE(Eventually([&] { return Hits(*a->collections, "kb", "bark", SearchMode::kBm25).find("cats#0") == 0; }));
  EXPECT_EQ(Hits(*a->collections, "kb", "purr", SearchMode::kBm25), "");  // the old text's words are gone

  // A replica started now loads the same state.
  auto c = StartReplica(dir_, pg.conninfo(), &st);
  ASSERT_NE(c, nullptr) << st;
  EXPECT_EQ(Hits(*c->collections, "kb", "a dog barking"), after);

  // A drop through a, and a new collection through c, reach every replica.
  ASSERT_TRUE(a->collections->Drop("kb").ok());
  ASSERT_TRUE(c->collections->Create("kb2", "", ChunkingOptions{}).ok());
  ASSERT_TRUE(c->collections->Ingest("kb2", kDocs).ok());
  const std::string kb2 = Hits(*c->collections, "kb2", query);
  for (Replica* r : {a.get(), b.get()}) {
    EXPECT_TRUE(Eventually([&] { return Hits(*r->collections, "kb", query) == "NOT_FOUND"; }));
    EXPECT_TRUE(Eventually([&] { return Hits(*r->collections, "kb2", query) == kb2; })) << Hits(*r->collections, "kb2", query);
  }
}

TEST_F(ReplicasTest, DatabaseRestartedMidRun_NothingCommittedLost_FollowerCatchesUp) {
  QRAG_START_POSTGRES(pg);
  absl::Status st;
  auto a = StartReplica(dir_, pg.conninfo(), &st);
  ASSERT_NE(a, nullptr) << st;
  auto b = StartReplica(dir_, pg.conninfo(), &st);
  ASSERT_NE(b, nullptr) << st;
  ASSERT_TRUE(a->collections->Create("kb", "", ChunkingOptions{}).ok());
  ASSERT_TRUE(a->collections->Ingest("kb", {kDocs[0]}).ok());
  ASSERT_EQ(pg.Stop(), 0);
  auto lost = a->collections->Ingest("kb", {kDocs[1]});
  EXPECT_THAT(lost, StatusIsCode(absl::StatusCode::kUnavailable));
  // Searches still answer from the replicas' indexes (the chunks' text needs the database: UNAVAILABLE).
  ASSERT_EQ(pg.Start(), 0);
  ASSERT_TRUE(a->collections->Ingest("kb", {kDocs[2]}).ok());
  const std::string want = Hits(*a->collections, "kb", "capital of France");
  ASSERT_THAT(want, HasSubstr("paris#0"));
  EXPECT_THAT(want, ::testing::Not(HasSubstr("rust")));  // the failed ingest stored nothing
  EXPECT_TRUE(Eventually([&] { return Hits(*b->collections, "kb", "capital of France") == want; }))
      << Hits(*b->collections, "kb", "capital of France");
  auto list = b->collections->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ((*list)[0].documents, 2);
}

}  // namespace
}  // namespace qrag::rag
