// FAISS indexes (HNSW, IVF-flat, auto) against the exact index on random unit vectors: recall above stated
// floors, deletes and upserts never resurrect a removed vector, filters still return min(k, kept) hits, the
// exact fallbacks (IVF before training, auto below its threshold), and every bad index parameter.
#include "server/rag/faiss_index.h"

#include <cmath>
#include <random>
#include <set>
#include <thread>

#include "server/backend/cpu/cpu_backend.h"
#include "server/rag/exact_index.h"
#include "server/rag/index_spec.h"
#include "tests/test_util.h"

namespace qrag::rag {

// Test names and failure messages say "hnsw" / "ivf" rather than the enum's bytes.
void PrintTo(IndexKind kind, std::ostream* os) { *os << IndexKindName(kind); }

namespace {

using ::testing::HasSubstr;

// `rows` unit vectors of `dim`: Gaussian directions, or around `clusters` random centres (embeddings of
// real text cluster by topic) when clusters > 0.
std::vector<float> UnitRows(int rows, int dim, uint32_t seed, int clusters = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(static_cast<size_t>(std::max(clusters, 1)) * dim);
  for (float& c : centres) c = normal(rng);
  std::vector<float> v(static_cast<size_t>(rows) * dim);
  for (int r = 0; r < rows; ++r) {
    const float* centre = centres.data() + static_cast<size_t>(clusters > 0 ? rng() % clusters : 0) * dim;
    double ss = 0;
    for (int j = 0; j < dim; ++j) {
      float& x = v[static_cast<size_t>(r) * dim + j];
      x = clusters > 0 ? centre[j] + 0.6f * normal(rng) : normal(rng);
      ss += static_cast<double>(x) * x;
    }
    for (int j = 0; j < dim; ++j) v[static_cast<size_t>(r) * dim + j] /= static_cast<float>(std::sqrt(ss));
  }
  return v;
}

absl::Span<const float> Row(const std::vector<float>& v, int r, int dim) {
  return absl::MakeConstSpan(v).subspan(static_cast<size_t>(r) * dim, dim);
}

IndexSpec Spec(IndexKind kind, IndexSpec s = {}) {
  s.kind = kind;
  auto r = ResolveIndexSpec(s);
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

std::unique_ptr<FaissIndex> MakeFaiss(int dim, const IndexSpec& spec, const std::vector<float>& corpus) {
  auto index = FaissIndex::Create(dim, spec);
  EXPECT_TRUE(index.ok()) << index.status();
  const int n = static_cast<int>(corpus.size() / dim);
  for (int i = 0; i < n; ++i) EXPECT_TRUE((*index)->Upsert(i, Row(corpus, i, dim)).ok());
  EXPECT_TRUE((*index)->Prepare().ok());
  return std::move(*index);
}

// Mean over queries of |approx top-k ∩ exact top-k| / k.
double Recall(const std::vector<std::vector<SearchHit>>& approx, const std::vector<std::vector<SearchHit>>& exact,
              int k) {
  double sum = 0;
  for (size_t q = 0; q < exact.size(); ++q) {
    std::set<int64_t> truth;
    for (int i = 0; i < k && i < static_cast<int>(exact[q].size()); ++i) truth.insert(exact[q][i].id);
    int found = 0;
    for (int i = 0; i < k && i < static_cast<int>(approx[q].size()); ++i) found += truth.count(approx[q][i].id);
    sum += static_cast<double>(found) / k;
  }
  return sum / exact.size();
}

class FaissIndexTest : public ::testing::Test {
 protected:
  std::vector<std::vector<SearchHit>> Exact(int dim, const std::vector<float>& corpus, const std::vector<float>& queries,
                                            int k, const std::function<bool(int64_t)>& keep = nullptr,
                                            const std::set<int64_t>& skip = {}) {
    auto index = ExactIndex::Create(dim, backend::Precision::kF32, &cpu_);
    EXPECT_TRUE(index.ok());
    const int n = static_cast<int>(corpus.size() / dim);
    for (int i = 0; i < n; ++i) {
      if (!skip.count(i)) EXPECT_TRUE((*index)->Upsert(i, Row(corpus, i, dim)).ok());
    }
    auto hits = (*index)->Search(queries.data(), static_cast<int>(queries.size() / dim), k, keep);
    EXPECT_TRUE(hits.ok()) << hits.status();
    return *hits;
  }

  backend::CpuBackend cpu_{backend::CpuBackendOptions{.num_threads = 1}};
};

// Random directions are the hardest case for a graph index (no structure to exploit): the defaults
// (m 32, ef_construction 128, ef_search 128) must still find 95% of the true top-10.
TEST_F(FaissIndexTest, Hnsw_Defaults_RandomUnitVectors_N4000_D64_RecallAt10AtLeast0_95) {
  constexpr int kDim = 64, kN = 4000, kQ = 100, kK = 10;
  const auto corpus = UnitRows(kN, kDim, 1), queries = UnitRows(kQ, kDim, 2);
  auto hnsw = MakeFaiss(kDim, Spec(IndexKind::kHnsw), corpus);
  ASSERT_TRUE(hnsw->UsesFaiss());
  auto approx = hnsw->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(approx.ok()) << approx.status();
  const auto exact = Exact(kDim, corpus, queries, kK);
  for (const auto& hits : *approx) {
    ASSERT_EQ(hits.size(), static_cast<size_t>(kK));
    for (size_t i = 1; i < hits.size(); ++i) EXPECT_FALSE(BetterHit(hits[i], hits[i - 1])) << "best first";
  }
  const double recall = Recall(*approx, exact, kK);
  EXPECT_GE(recall, 0.95);
  // The scores are the vectors' true inner products.
  const auto& top = (*approx)[0][0];
  float dot = 0;
  for (int j = 0; j < kDim; ++j) dot += queries[j] * corpus[static_cast<size_t>(top.id) * kDim + j];
  EXPECT_NEAR(top.score, dot, 1e-5);
  // A tiny ef_search loses recall, which shows the parameter is applied.
  IndexSpec low;
  low.hnsw_ef_search = 1;
  low.hnsw_m = 4;
  low.hnsw_ef_construction = 8;
  auto weak = MakeFaiss(kDim, Spec(IndexKind::kHnsw, low), corpus);
  auto weak_hits = weak->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(weak_hits.ok());
  EXPECT_LT(Recall(*weak_hits, exact, kK), recall);
}

// IVF on clustered unit vectors (as embeddings of text are): nprobe 16 of 64 lists finds 95% of the top-10,
// and all lists (nprobe == nlist) is exact.
TEST_F(FaissIndexTest, Ivf_Nlist64_Nprobe16_ClusteredUnitVectors_N4000_D64_RecallAt10AtLeast0_95) {
  constexpr int kDim = 64, kN = 4000, kQ = 100, kK = 10;
  const auto corpus = UnitRows(kN, kDim, 3, /*clusters=*/40), queries = UnitRows(kQ, kDim, 3, 40);
  IndexSpec p;
  p.ivf_nlist = 64;
  p.ivf_nprobe = 16;
  auto ivf = MakeFaiss(kDim, Spec(IndexKind::kIvf, p), corpus);
  ASSERT_TRUE(ivf->UsesFaiss());
  EXPECT_THAT(ivf->Describe(), HasSubstr("4000 vectors in 64 lists trained on 4000"));
  const auto exact = Exact(kDim, corpus, queries, kK);
  auto approx = ivf->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(approx.ok()) << approx.status();
  EXPECT_GE(Recall(*approx, exact, kK), 0.95);
  p.ivf_nprobe = 64;
  auto all = MakeFaiss(kDim, Spec(IndexKind::kIvf, p), corpus);
  auto all_hits = all->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(all_hits.ok());
  EXPECT_EQ(Recall(*all_hits, exact, kK), 1.0);
}

TEST_F(FaissIndexTest, Ivf_FewerVectorsThanNlist_ExactUntilTrained_ThenFaiss_RetrainedWhenDoubled) {
  constexpr int kDim = 16, kK = 5;
  const auto corpus = UnitRows(201, kDim, 4), queries = UnitRows(10, kDim, 5);
  IndexSpec p;
  p.ivf_nlist = 50;
  auto index = FaissIndex::Create(kDim, Spec(IndexKind::kIvf, p));
  ASSERT_TRUE(index.ok());
  for (int i = 0; i < 49; ++i) ASSERT_TRUE((*index)->Upsert(i, Row(corpus, i, kDim)).ok());
  auto hits = (*index)->Search(queries.data(), 10, kK);
  ASSERT_TRUE(hits.ok());
  EXPECT_FALSE((*index)->UsesFaiss());
  EXPECT_THAT((*index)->Describe(), HasSubstr("exact search until the collection holds ivf_nlist=50 vectors"));
  std::set<int64_t> skip;
  for (int i = 49; i < 201; ++i) skip.insert(i);
  const auto exact = Exact(kDim, corpus, queries, kK, nullptr, skip);
  for (int q = 0; q < 10; ++q) {
    ASSERT_EQ((*hits)[q].size(), static_cast<size_t>(kK));
    for (int i = 0; i < kK; ++i) {
      EXPECT_EQ((*hits)[q][i].id, exact[q][i].id);
      EXPECT_NEAR((*hits)[q][i].score, exact[q][i].score, 1e-5);
    }
  }
  for (int i = 49; i < 100; ++i) ASSERT_TRUE((*index)->Upsert(i, Row(corpus, i, kDim)).ok());
  hits = (*index)->Search(queries.data(), 10, kK);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE((*index)->UsesFaiss());
  for (const auto& h : *hits) EXPECT_EQ(h.size(), static_cast<size_t>(kK));
  EXPECT_THAT((*index)->Describe(), HasSubstr("ivf: 100 vectors in 50 lists trained on 100"));
  // k-means on the first 100 vectors goes stale as the collection grows: past twice that, it retrains.
  for (int i = 100; i < 200; ++i) ASSERT_TRUE((*index)->Upsert(i, Row(corpus, i, kDim)).ok());
  ASSERT_TRUE((*index)->Prepare().ok());
  EXPECT_THAT((*index)->Describe(), HasSubstr("200 vectors in 50 lists trained on 100"));
  ASSERT_TRUE((*index)->Upsert(200, Row(corpus, 200, kDim)).ok());
  (*index)->Remove(3);
  EXPECT_THAT((*index)->Describe(), HasSubstr("1 deleted awaiting compaction, 1 changes pending"));
  ASSERT_TRUE((*index)->Upsert(3, Row(corpus, 3, kDim)).ok());  // 201 vectors: more than twice 100
  ASSERT_TRUE((*index)->Prepare().ok());
  EXPECT_THAT((*index)->Describe(), HasSubstr("ivf: 201 vectors in 50 lists trained on 201"));
  EXPECT_EQ((*index)->TombstonesForTest(), 0);
}

TEST_F(FaissIndexTest, Auto_ExactBelowThreshold_HnswFrom_BackToExactBelowHalf) {
  constexpr int kDim = 16;
  const auto corpus = UnitRows(200, kDim, 6), queries = UnitRows(5, kDim, 7);
  IndexSpec p;
  p.auto_threshold = 100;
  auto index = FaissIndex::Create(kDim, Spec(IndexKind::kAuto, p));
  ASSERT_TRUE(index.ok());
  for (int i = 0; i < 99; ++i) ASSERT_TRUE((*index)->Upsert(i, Row(corpus, i, kDim)).ok());
  ASSERT_TRUE((*index)->Prepare().ok());
  EXPECT_FALSE((*index)->UsesFaiss());
  EXPECT_THAT((*index)->Describe(), HasSubstr("auto: exact search below 100 vectors (holds 99)"));
  ASSERT_TRUE((*index)->Upsert(99, Row(corpus, 99, kDim)).ok());
  ASSERT_TRUE((*index)->Prepare().ok());
  EXPECT_TRUE((*index)->UsesFaiss());
  EXPECT_THAT((*index)->Describe(), HasSubstr("auto: hnsw graph of 100 vectors"));
  for (int i = 0; i < 60; ++i) (*index)->Remove(i);  // 40 left: below half the threshold
  auto hits = (*index)->Search(queries.data(), 5, 50);
  ASSERT_TRUE(hits.ok());
  EXPECT_FALSE((*index)->UsesFaiss());
  for (const auto& h : *hits) {
    EXPECT_EQ(h.size(), 40u);
    for (const SearchHit& hit : h) EXPECT_GE(hit.id, 60);
  }
}

// Both FAISS kinds, each test run for hnsw and ivf.
class FaissKindTest : public FaissIndexTest, public ::testing::WithParamInterface<IndexKind> {};

// HNSW cannot remove: removed and replaced vectors are tombstoned, never returned, and the graph is
// rebuilt once more than a quarter of it is tombstoned. IVF removes them from its lists at the next Prepare.
TEST_P(FaissKindTest, RemoveAndUpsert_NeverReturnStale_KHitsKept_TombstonesCompacted) {
  constexpr int kDim = 32, kN = 1000, kQ = 20, kK = 10;
  const auto corpus = UnitRows(kN, kDim, 8, 20), queries = UnitRows(kQ, kDim, 8, 20);
  IndexSpec p;
  if (GetParam() == IndexKind::kIvf) p.ivf_nlist = 16;
  auto index = MakeFaiss(kDim, Spec(GetParam(), p), corpus);
  ASSERT_TRUE(index->UsesFaiss());
  // Remove a fifth (below the HNSW rebuild ratio): the removed ids never come back.
  std::set<int64_t> removed;
  for (int i = 0; i < kN; i += 5) {
    index->Remove(i);
    removed.insert(i);
  }
  index->Remove(123456);  // unknown: no-op
  EXPECT_EQ(index->size(), kN - static_cast<int64_t>(removed.size()));
  auto hits = index->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(hits.ok()) << hits.status();
  for (const auto& h : *hits) {
    ASSERT_EQ(h.size(), static_cast<size_t>(kK));
    for (const SearchHit& hit : h) EXPECT_FALSE(removed.count(hit.id)) << "removed id " << hit.id << " returned";
  }
  if (GetParam() == IndexKind::kIvf) {
    EXPECT_EQ(index->TombstonesForTest(), 0) << "IVF removes them from its lists";
  } else {
    EXPECT_EQ(index->TombstonesForTest(), static_cast<int64_t>(removed.size())) << "HNSW keeps them below 1/4";
  }
  // Upsert: id 1 now holds query 0 itself, so it is query 0's best hit with score 1; its old vector is gone.
  ASSERT_TRUE(index->Upsert(1, Row(queries, 0, kDim)).ok());
  hits = index->Search(queries.data(), 1, kK);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ((*hits)[0][0].id, 1);
  EXPECT_NEAR((*hits)[0][0].score, 1.0f, 1e-5);
  auto old = index->Search(corpus.data() + 1 * kDim, 1, kK);  // the old vector of id 1 as the query
  ASSERT_TRUE(old.ok());
  for (const SearchHit& hit : (*old)[0]) {
    if (hit.id == 1) EXPECT_LT(hit.score, 0.999f) << "id 1's old vector is still searched";
  }
  // Remove past a quarter: HNSW rebuilds from the live vectors.
  for (int i = 1; i < kN; i += 5) {
    if (i != 1) {
      index->Remove(i);
      removed.insert(i);
    }
  }
  ASSERT_TRUE(index->Prepare().ok());
  EXPECT_EQ(index->TombstonesForTest(), 0);
  hits = index->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(hits.ok());
  const auto exact = Exact(kDim, corpus, queries, kK, nullptr, removed);
  for (const auto& h : *hits) {
    ASSERT_EQ(h.size(), static_cast<size_t>(kK));
    for (const SearchHit& hit : h) EXPECT_FALSE(removed.count(hit.id));
  }
  // Removing everything leaves an empty index, not an error.
  for (int i = 0; i < kN; ++i) index->Remove(i);
  hits = index->Search(queries.data(), kQ, kK);
  ASSERT_TRUE(hits.ok());
  for (const auto& h : *hits) EXPECT_TRUE(h.empty());
}

// Filters: a selective one (1 in 20) is scored exactly over the kept vectors; a broad one (1 in 2) widens the
// FAISS search. Both return min(k, kept) hits, all accepted, with recall against the filtered exact search.
TEST_P(FaissKindTest, SelectiveAndBroadFilters_MinKKeptHits_AllAccepted) {
  constexpr int kDim = 32, kN = 2000, kQ = 20, kK = 10;
  const auto corpus = UnitRows(kN, kDim, 9, 20), queries = UnitRows(kQ, kDim, 10, 20);
  IndexSpec p;
  if (GetParam() == IndexKind::kIvf) p.ivf_nlist = 32;
  auto index = MakeFaiss(kDim, Spec(GetParam(), p), corpus);
  for (int divisor : {20, 2}) {
    auto keep = [divisor](int64_t id) { return id % divisor == 0; };
    auto hits = index->Search(queries.data(), kQ, kK, keep);
    ASSERT_TRUE(hits.ok()) << hits.status();
    for (const auto& h : *hits) {
      ASSERT_EQ(h.size(), static_cast<size_t>(kK)) << "divisor " << divisor;
      for (const SearchHit& hit : h) EXPECT_EQ(hit.id % divisor, 0);
    }
    EXPECT_GE(Recall(*hits, Exact(kDim, corpus, queries, kK, keep), kK), 0.9) << "divisor " << divisor;
  }
  // Fewer accepted vectors than k: all of them, exactly ranked.
  auto three = [](int64_t id) { return id == 5 || id == 500 || id == 1500; };
  auto hits = index->Search(queries.data(), kQ, kK, three);
  ASSERT_TRUE(hits.ok());
  const auto exact = Exact(kDim, corpus, queries, kK, three);
  for (int q = 0; q < kQ; ++q) {
    ASSERT_EQ((*hits)[q].size(), 3u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ((*hits)[q][i].id, exact[q][i].id);
  }
  // A filter rejecting everything: no hits.
  hits = index->Search(queries.data(), kQ, kK, [](int64_t) { return false; });
  ASSERT_TRUE(hits.ok());
  for (const auto& h : *hits) EXPECT_TRUE(h.empty());
}

INSTANTIATE_TEST_SUITE_P(Kinds, FaissKindTest, ::testing::Values(IndexKind::kHnsw, IndexKind::kIvf),
                         [](const auto& info) { return std::string(IndexKindName(info.param)); });

TEST_F(FaissIndexTest, ConcurrentSearchesAndUpserts_FourThreads_NoErrors_KHitsEach) {
  constexpr int kDim = 16, kN = 600;
  const auto corpus = UnitRows(kN, kDim, 11), queries = UnitRows(8, kDim, 12);
  auto index = MakeFaiss(kDim, Spec(IndexKind::kHnsw), std::vector<float>(corpus.begin(), corpus.begin() + 300 * kDim));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  threads.emplace_back([&] {
    for (int i = 300; i < kN; ++i) {
      if (!index->Upsert(i, Row(corpus, i, kDim)).ok()) ++bad;
      if (i % 3 == 0) index->Remove(i - 300);
    }
  });
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < 30; ++r) {
        auto hits = index->Search(queries.data(), 8, 5);
        if (!hits.ok()) ++bad;
        else for (const auto& h : *hits) if (h.size() != 5u) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(index->size(), kN - 100);
}

TEST(FaissIndexErrors, BadDimensionsAndArguments_InvalidArgument) {
  EXPECT_THAT(FaissIndex::Create(0, Spec(IndexKind::kHnsw)), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(FaissIndex::Create(8, IndexSpec{}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exact")));
  IndexSpec unresolved;
  unresolved.kind = IndexKind::kHnsw;
  EXPECT_THAT(FaissIndex::Create(8, unresolved), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resolved")));
  auto index = FaissIndex::Create(8, Spec(IndexKind::kHnsw));
  ASSERT_TRUE(index.ok());
  const std::vector<float> v(7, 0.1f);
  EXPECT_THAT((*index)->Upsert(1, v), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("7 dimensions")));
  const std::vector<float> q(8, 0.1f);
  EXPECT_THAT((*index)->Search(q.data(), 1, -1), StatusIsCode(absl::StatusCode::kInvalidArgument));
  auto empty = (*index)->Search(q.data(), 1, 5);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE((*empty)[0].empty());
}

struct BadSpec {
  const char* name;
  IndexSpec spec;
  const char* message;
};

TEST(IndexSpecTest, EveryBadParameter_InvalidArgumentNamingTheField) {
  auto spec = [](IndexKind kind, auto set) {
    IndexSpec s;
    s.kind = kind;
    set(s);
    return s;
  };
  const std::vector<BadSpec> cases = {
      {"m too small", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.hnsw_m = 2; }), "index.hnsw_m must be in [4, 128]"},
      {"m too large", spec(IndexKind::kAuto, [](IndexSpec& s) { s.hnsw_m = 129; }), "index.hnsw_m must be in [4, 128]"},
      {"negative m", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.hnsw_m = -1; }), "hnsw_m"},
      {"ef_construction", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.hnsw_ef_construction = 4; }),
       "index.hnsw_ef_construction must be in [8, 4096]"},
      {"ef_search", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.hnsw_ef_search = 5000; }),
       "index.hnsw_ef_search must be in [1, 4096]"},
      {"nlist", spec(IndexKind::kIvf, [](IndexSpec& s) { s.ivf_nlist = 70000; }), "index.ivf_nlist must be in [1, 65536]"},
      {"negative nlist", spec(IndexKind::kIvf, [](IndexSpec& s) { s.ivf_nlist = -3; }), "ivf_nlist"},
      {"nprobe > nlist", spec(IndexKind::kIvf, [](IndexSpec& s) { s.ivf_nlist = 8; s.ivf_nprobe = 9; }),
       "index.ivf_nprobe must be in [1, 8]"},
      {"nprobe > default nlist", spec(IndexKind::kIvf, [](IndexSpec& s) { s.ivf_nprobe = 200; }),
       "index.ivf_nprobe must be in [1, 128]"},
      {"threshold", spec(IndexKind::kAuto, [](IndexSpec& s) { s.auto_threshold = -5; }), "index.auto_threshold"},
      {"hnsw param on ivf", spec(IndexKind::kIvf, [](IndexSpec& s) { s.hnsw_ef_search = 10; }),
       "index.hnsw_ef_search applies to hnsw and auto indexes, not ivf"},
      {"ivf param on hnsw", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.ivf_nprobe = 2; }),
       "index.ivf_nprobe applies to ivf indexes, not hnsw"},
      {"param on exact", spec(IndexKind::kExact, [](IndexSpec& s) { s.hnsw_m = 16; }), "not exact"},
      {"threshold on hnsw", spec(IndexKind::kHnsw, [](IndexSpec& s) { s.auto_threshold = 10; }),
       "index.auto_threshold applies to auto indexes, not hnsw"},
  };
  for (const BadSpec& c : cases) {
    EXPECT_THAT(ResolveIndexSpec(c.spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message))) << c.name;
  }
}

TEST(IndexSpecTest, DefaultsResolved_JsonRoundTrip_BadJsonDataLoss) {
  auto hnsw = ResolveIndexSpec({.kind = IndexKind::kHnsw});
  ASSERT_TRUE(hnsw.ok());
  EXPECT_EQ(hnsw->hnsw_m, 32);
  EXPECT_EQ(hnsw->hnsw_ef_construction, 128);
  EXPECT_EQ(hnsw->hnsw_ef_search, 128);
  auto ivf = ResolveIndexSpec({.kind = IndexKind::kIvf, .ivf_nlist = 4});
  ASSERT_TRUE(ivf.ok());
  EXPECT_EQ(ivf->ivf_nprobe, 4) << "the default nprobe is capped at nlist";
  auto aut = ResolveIndexSpec({.kind = IndexKind::kAuto, .hnsw_ef_search = 64});
  ASSERT_TRUE(aut.ok());
  EXPECT_EQ(aut->auto_threshold, 20000);
  for (const IndexSpec& s : {IndexSpec{}, *hnsw, *ivf, *aut}) {
    auto back = IndexSpecFromJson(IndexSpecToJson(s));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, s) << IndexSpecToJson(s);
  }
  EXPECT_EQ(IndexSpecToJson(*ivf), R"({"ivf_nlist":4,"ivf_nprobe":4,"kind":"ivf"})");
  EXPECT_EQ(IndexSpecToString(*hnsw), "hnsw m=32 ef_construction=128 ef_search=128");
  auto empty = IndexSpecFromJson("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->kind, IndexKind::kExact);
  for (const char* bad : {"{", "[]", R"({"kind":"lsh"})", R"({"kind":"hnsw","hnsw_m":"x"})", R"({"kind":"hnsw","hnsw_m":1})"}) {
    EXPECT_THAT(IndexSpecFromJson(bad), StatusIsCode(absl::StatusCode::kDataLoss)) << bad;
  }
  EXPECT_THAT(ParseIndexKind("flat"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exact, hnsw, ivf, auto")));
  EXPECT_EQ(*ParseIndexKind("auto"), IndexKind::kAuto);
}

}  // namespace
}  // namespace qrag::rag
