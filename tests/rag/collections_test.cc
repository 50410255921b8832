// RAG collections on the real all-MiniLM-L6-v2 encoder: chunking, ingest/upsert/delete, retrieval with
// metadata filters, the index rebuilt from the store on reopen, and every documented failure.
#include "server/rag/collections.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "server/backend/cpu/cpu_backend.h"
#include "server/rag/chunker.h"
#include "tests/model/minilm_fixture.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

class CollectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ::qrag::testing::MiniLmDir();
    if (!dir) {
      if (::qrag::testing::RequireShared()) FAIL() << "MiniLM weights missing (tests/fetch_minilm.sh)";
      GTEST_SKIP() << "MiniLM weights missing: run tests/fetch_minilm.sh or set QRAG_MINILM_DIR";
    }
    auto enc = model::BertEncoder::Load(*dir, &encoder_backend_, {});
    ASSERT_TRUE(enc.ok()) << enc.status();
    encoder_ = std::move(*enc);
  }

  std::unique_ptr<Collections> Open(int64_t max_bytes = 0) {
    CollectionsOptions o;
    o.data_dir = tmp_.Join("data");
    o.max_store_bytes = max_bytes;
    o.max_document_bytes = 100000;
    auto c = Collections::Open(o, encoder_.get(), &index_backend_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  TempDir tmp_;
  backend::CpuBackend encoder_backend_{backend::CpuBackendOptions{}};
  backend::CpuBackend index_backend_{backend::CpuBackendOptions{}};
  std::unique_ptr<model::BertEncoder> encoder_;
};

const std::vector<DocumentInput> kDocs = {
    {"cats", "Cats are small domesticated carnivorous mammals that purr and hunt mice.", {{"topic", "animals"}}},
    {"rust", "Rust is a systems programming language focused on memory safety without garbage collection.",
     {{"topic", "software"}}},
    {"paris", "Paris is the capital city of France, known for the Eiffel Tower.", {{"topic", "places"}}},
};

TEST_F(CollectionsTest, IngestRetrieve_RelevantFirst_FilterUpsertDelete_SurvivesReopen) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Create("kb", "", {32, 4}).ok());
  auto r = c->Ingest("kb", kDocs);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->documents, 3);
  EXPECT_EQ(r->replaced, 0);
  RetrieveTimings t;
  auto hits = c->Retrieve("kb", "Which language prevents memory bugs?", 3, -1.0f, {}, &t);
  ASSERT_TRUE(hits.ok()) << hits.status();
  ASSERT_EQ(hits->size(), 3u);
  EXPECT_EQ((*hits)[0].chunk.document_id, "rust");
  EXPECT_EQ((*hits)[0].chunk.metadata.at("topic"), "software");
  EXPECT_GT((*hits)[0].score, (*hits)[1].score);
  EXPECT_GT(t.embed_seconds, 0);
  // min_score cuts the tail; a filter keeps only matching documents.
  hits = c->Retrieve("kb", "Which language prevents memory bugs?", 3, (*hits)[0].score - 1e-4f, {}, nullptr);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 1u);
  hits = c->Retrieve("kb", "Which language prevents memory bugs?", 3, -1.0f, {{"topic", "places"}}, nullptr);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].chunk.document_id, "paris");
  // Upsert: "cats" now talks about the Louvre; a Paris question finds both, the old text is gone.
  r = c->Ingest("kb", {{"cats", "The Louvre museum in Paris holds the Mona Lisa.", {}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->replaced, 1);
  hits = c->Retrieve("kb", "domesticated mammals that purr", 3, -1.0f, {}, nullptr);
  ASSERT_TRUE(hits.ok());
  for (const auto& h : *hits) EXPECT_EQ(h.chunk.text.find("purr"), std::string::npos);
  auto deleted = c->Delete("kb", {"paris", "unknown"});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  c.reset();
  // Reopen: the index is rebuilt from the store.
  c = Open();
  ASSERT_NE(c, nullptr);
  auto list = c->List().value();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].documents, 2);
  hits = c->Retrieve("kb", "Which language prevents memory bugs?", 5, -1.0f, {}, nullptr);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 2u);
  EXPECT_EQ((*hits)[0].chunk.document_id, "rust");
  ASSERT_TRUE(c->Drop("kb").ok());
  EXPECT_THAT(c->Retrieve("kb", "x", 1, -1, {}, nullptr), StatusIsCode(absl::StatusCode::kNotFound));
}

// Collections on FAISS indexes: the same top hits as the exact collection, filters, upsert and delete, the
// index kind and its parameters persisted and the structure rebuilt on reopen, and bad parameters.
TEST_F(CollectionsTest, HnswIvfAuto_SameTopHitAsExact_FilterUpsertDelete_KindSurvivesReopen) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  std::vector<DocumentInput> docs = kDocs;
  for (int i = 0; i < 12; ++i) {  // enough vectors for IVF with nlist 8 to train
    docs.push_back({"filler" + std::to_string(i),
                    "Note " + std::to_string(i) + " about gardening, weather and cooking pasta at home.",
                    {{"topic", "misc"}}});
  }
  const std::vector<std::pair<std::string, IndexSpec>> specs = {
      {"exact", {}},
      {"hnsw", {.kind = IndexKind::kHnsw, .hnsw_ef_search = 16}},
      {"ivf", {.kind = IndexKind::kIvf, .ivf_nlist = 8, .ivf_nprobe = 8}},
      {"auto", {.kind = IndexKind::kAuto, .auto_threshold = 10}},
  };
  for (const auto& [name, spec] : specs) {
    auto info = c->Create(name, "", {32, 4}, spec);
    ASSERT_TRUE(info.ok()) << name << ": " << info.status();
    EXPECT_EQ(info->index.kind, spec.kind);
    ASSERT_TRUE(c->Ingest(name, docs).ok()) << name;
  }
  for (const auto& [name, spec] : specs) {
    auto hits = c->Retrieve(name, "Which language prevents memory bugs?", 3, -1.0f, {}, nullptr);
    ASSERT_TRUE(hits.ok()) << name << ": " << hits.status();
    ASSERT_EQ(hits->size(), 3u) << name;
    EXPECT_EQ((*hits)[0].chunk.document_id, "rust") << name;
    hits = c->Retrieve(name, "Which language prevents memory bugs?", 5, -1.0f, {{"topic", "places"}}, nullptr);
    ASSERT_TRUE(hits.ok());
    ASSERT_EQ(hits->size(), 1u) << name << ": the filter keeps one document";
    EXPECT_EQ((*hits)[0].chunk.document_id, "paris");
    hits = c->Retrieve(name, "cooking pasta", 4, -1.0f, {{"topic", "misc"}}, nullptr);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), 4u) << name << ": a broad filter still returns top_k";
    for (const auto& h : *hits) EXPECT_EQ(h.chunk.metadata.at("topic"), "misc");
    // Upsert "rust" to a text about cats, delete "paris": neither old text is found any more.
    ASSERT_TRUE(c->Ingest(name, {{"rust", "Kittens purr and chase mice around the barn.", {{"topic", "animals"}}}}).ok());
    ASSERT_TRUE(c->Delete(name, {"paris"}).ok());
    hits = c->Retrieve(name, "Which language prevents memory bugs?", 20, -1.0f, {}, nullptr);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), docs.size() - 1) << name;
    for (const auto& h : *hits) {
      EXPECT_EQ(h.chunk.text.find("memory safety"), std::string::npos) << name << ": replaced text returned";
      EXPECT_NE(h.chunk.document_id, "paris") << name;
    }
  }
  auto list = c->List().value();
  ASSERT_EQ(list.size(), 4u);
  std::map<std::string, CollectionInfo> by_name;
  for (const auto& i : list) by_name[i.name] = i;
  EXPECT_THAT(by_name["exact"].index_status, HasSubstr("exact fp32"));
  EXPECT_THAT(by_name["hnsw"].index_status, HasSubstr("hnsw: graph of"));
  EXPECT_THAT(by_name["ivf"].index_status, HasSubstr("in 8 lists trained on"));
  EXPECT_THAT(by_name["auto"].index_status, HasSubstr("auto: hnsw graph"));
  c.reset();
  c = Open();  // reopen: kinds and parameters come back from the store, the structures are rebuilt
  ASSERT_NE(c, nullptr);
  const auto all = c->List().value();
  for (const auto& i : all) {
    const IndexSpec want = *ResolveIndexSpec(by_name[i.name].index);
    EXPECT_EQ(i.index, want) << i.name;
    EXPECT_EQ(i.chunks, by_name[i.name].chunks) << i.name;
    auto hits = c->Retrieve(i.name, "kittens chasing mice", 1, -1.0f, {}, nullptr);
    ASSERT_TRUE(hits.ok()) << i.name;
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].chunk.document_id, "rust") << i.name;
  }
  EXPECT_EQ(by_name["hnsw"].index.hnsw_ef_search, 16);
  EXPECT_EQ(by_name["hnsw"].index.hnsw_m, kDefaultHnswM);
  // Bad parameters: INVALID_ARGUMENT, nothing created.
  EXPECT_THAT(c->Create("bad", "", {32, 4}, {.kind = IndexKind::kHnsw, .hnsw_m = 1000}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index.hnsw_m must be in [4, 128]")));
  EXPECT_THAT(c->Create("bad", "", {32, 4}, {.kind = IndexKind::kIvf, .ivf_nlist = 4, .ivf_nprobe = 5}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ivf_nprobe")));
  EXPECT_THAT(c->Create("bad", "", {32, 4}, {.kind = IndexKind::kExact, .ivf_nlist = 4}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not exact")));
  EXPECT_EQ(c->List().value().size(), 4u);
}

TEST_F(CollectionsTest, LongDocument_ChunkedWithOverlap_EveryChunkFitsTheEncoder) {
  std::string text;
  for (int i = 0; i < 120; ++i) text += "Sentence number " + std::to_string(i) + " talks about topic " + std::to_string(i % 7) + ". ";
  auto chunks = ChunkText(text, encoder_->tokenizer(), {64, 8});
  ASSERT_TRUE(chunks.ok());
  ASSERT_GT(chunks->size(), 5u);
  for (size_t i = 0; i < chunks->size(); ++i) {
    EXPECT_LE((*chunks)[i].tokens.size(), 64u);
    EXPECT_NE(text.find((*chunks)[i].text), std::string::npos) << "chunk text is a slice of the original";
    if (i > 0) {  // overlap: the chunk starts before the previous one ended
      const size_t prev_end = text.find((*chunks)[i - 1].text) + (*chunks)[i - 1].text.size();
      EXPECT_LT(text.find((*chunks)[i].text, text.find((*chunks)[i - 1].text) + 1), prev_end);
    }
  }
  EXPECT_EQ(text.substr(text.size() - 20, 19), (*chunks).back().text.substr((*chunks).back().text.size() - 19));
}

TEST_F(CollectionsTest, BadRequests_ClearErrors_NothingStored) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->Create("bad name!", "", {32, 4}), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(c->Create("kb", "", {1000, 4}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk_tokens")));
  EXPECT_THAT(c->Create("kb", "", {32, 16}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlap")));
  EXPECT_THAT(c->Create("kb", "bert-large", {32, 4}), StatusIsCode(absl::StatusCode::kFailedPrecondition));
  ASSERT_TRUE(c->Create("kb", "", {32, 4}).ok());
  EXPECT_THAT(c->Create("kb", "", {32, 4}), StatusIsCode(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(c->Ingest("nope", kDocs), StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(c->Ingest("kb", {{"a", "ok", {}}, {"", "no id", {}}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id")));
  EXPECT_THAT(c->Ingest("kb", {{"a", "", {}}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(c->Ingest("kb", {{"a", "  \n\t ", {}}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(c->Ingest("kb", {{"a", std::string(100001, 'x'), {}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
  EXPECT_THAT(c->Ingest("kb", {{"a", "x", {}}, {"a", "y", {}}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(c->Ingest("kb", {{"a", "bad \xff", {}}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  EXPECT_THAT(c->Retrieve("kb", "", 3, 0, {}, nullptr), StatusIsCode(absl::StatusCode::kInvalidArgument));
  // One query rule for Retrieve and Generate's rag option (CheckQuery): top_k 0 is the default, the rest of
  // [0, max_top_k]; min_score a cosine in [-1, 1], never NaN.
  EXPECT_TRUE(c->Retrieve("kb", "q", 0, 0, {}, nullptr).ok());
  EXPECT_THAT(c->Retrieve("kb", "q", -1, 0, {}, nullptr), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(c->Retrieve("kb", "q", 100000, 0, {}, nullptr), StatusIsCode(absl::StatusCode::kInvalidArgument));
  for (float bad : {std::nanf(""), -INFINITY, 2.0f, -1.5f}) {
    EXPECT_THAT(c->Retrieve("kb", "q", 3, bad, {}, nullptr),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_score is a cosine similarity")));
  }
  EXPECT_EQ(c->CheckQuery(0, 0, "rag.").value_or(-1), kDefaultTopK);
  EXPECT_THAT(c->CheckQuery(1001, 0, "rag."),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rag.top_k must be in [0, 1000] (0: 5)")));
  EXPECT_EQ(c->List().value()[0].documents, 0);
  auto hits = c->Retrieve("kb", "anything", 3, -1, {}, nullptr);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
}

TEST_F(CollectionsTest, CollectionOfAnotherEmbedder_FailedPrecondition) {
  {
    auto store = DocumentStore::Open((std::filesystem::create_directories(tmp_.Join("data")), tmp_.Join("data/rag.sqlite")));
    ASSERT_TRUE(store.ok());
    CollectionInfo info;
    info.name = "old";
    info.embedder = "bge-small@0123456789abcdef";
    info.precision = "fp32";
    info.dim = 384;
    info.chunk_tokens = 32;
    info.chunk_overlap = 4;
    ASSERT_TRUE((*store)->CreateCollection(info).ok());
  }
  auto c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->Ingest("old", kDocs), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("bge-small")));
  EXPECT_THAT(c->Retrieve("old", "q", 1, 0, {}, nullptr), StatusIsCode(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(c->Drop("old").ok());  // dropping it is still allowed
}

TEST_F(CollectionsTest, StoreFull_ResourceExhausted_AcknowledgedDocumentsKept) {
  auto c = Open(/*max_bytes=*/96 << 10);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Create("kb", "", {32, 4}).ok());
  ASSERT_TRUE(c->Ingest("kb", kDocs).ok());
  std::string big;
  for (int i = 0; i < 400; ++i) big += "filler words to fill the disk quota ";
  EXPECT_THAT(c->Ingest("kb", {{"big", big, {}}}), StatusIsCode(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(c->List().value()[0].documents, 3);
  auto hits = c->Retrieve("kb", "filler words", 10, -1, {}, nullptr);
  ASSERT_TRUE(hits.ok());
  for (const auto& h : *hits) EXPECT_NE(h.chunk.document_id, "big");
}


TEST_F(CollectionsTest, SearchModes_Bm25FindsRareWords_HybridFuses_ScoresAreCosines_GroupByDocument) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Create("kb", "", {32, 4}).ok());
  std::vector<DocumentInput> docs = kDocs;
  docs.push_back({"fault", "Fault code QX7731 on the dishwasher means the drain pump is blocked.", {{"topic", "manuals"}}});
  std::string long_text;  // many chunks of one document, all about cats
  for (int i = 0; i < 12; ++i) {
    long_text += "Cats sleep for many hours a day, and a cat purrs when it is content. ";
  }
  docs.push_back({"catbook", long_text, {{"topic", "animals"}}});
  ASSERT_TRUE(c->Ingest("kb", docs).ok());
  auto retrieve = [&](const std::string& q, int k, float min_score, SearchMode mode, bool group = false,
                      const Metadata& filter = {}) {
    auto hits = c->Retrieve("kb", q, k, min_score, filter, nullptr, {.mode = mode, .group_by_document = group});
    EXPECT_TRUE(hits.ok()) << hits.status();
    return hits.ok() ? *hits : std::vector<RetrievedChunk>{};
  };
  // BM25: only chunks sharing a word; the rare code first, with its BM25; the score is still the cosine.
  auto bm25 = retrieve("what does QX7731 mean", 10, -1, SearchMode::kBm25);
  ASSERT_FALSE(bm25.empty());
  EXPECT_EQ(bm25[0].chunk.document_id, "fault");
  for (size_t i = 0; i < bm25.size(); ++i) {
    EXPECT_GT(bm25[i].bm25, 0.0f) << i;
    if (i > 0) EXPECT_GE(bm25[i - 1].bm25, bm25[i].bm25);
    EXPECT_EQ(bm25[i].fused, 0.0f);
  }
  // Dense: the cosine order, no BM25 computed.
  auto dense = retrieve("what does QX7731 mean", 100, -1, SearchMode::kDense);
  std::map<int64_t, float> cosine;
  for (size_t i = 0; i < dense.size(); ++i) {
    cosine[dense[i].chunk.id] = dense[i].score;
    EXPECT_EQ(dense[i].bm25, 0.0f);
    if (i > 0) EXPECT_GE(dense[i - 1].score, dense[i].score);
  }
  // Each BM25 hit's score is its true cosine (the same as dense mode's for that chunk).
  for (const auto& h : bm25) EXPECT_FLOAT_EQ(h.score, cosine.at(h.chunk.id)) << h.chunk.document_id;
  // Hybrid: fused scores, non-increasing; the chunk ranked well by both is first; cosines as above.
  auto hybrid = retrieve("what does QX7731 mean", 100, -1, SearchMode::kHybrid);
  ASSERT_EQ(hybrid.size(), dense.size());  // every chunk is a dense candidate
  EXPECT_EQ(hybrid[0].chunk.document_id, "fault");
  for (size_t i = 0; i < hybrid.size(); ++i) {
    EXPECT_GT(hybrid[i].fused, 0.0f);
    if (i > 0) EXPECT_GE(hybrid[i - 1].fused, hybrid[i].fused);
    EXPECT_FLOAT_EQ(hybrid[i].score, cosine.at(hybrid[i].chunk.id));
  }
  // RRF by hand for the first: 1/(60 + dense rank) + 1/(60 + bm25 rank).
  int dense_rank = 0, bm25_rank = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    if (dense[i].chunk.id == hybrid[0].chunk.id) dense_rank = static_cast<int>(i) + 1;
  }
  for (size_t i = 0; i < bm25.size(); ++i) {
    if (bm25[i].chunk.id == hybrid[0].chunk.id) bm25_rank = static_cast<int>(i) + 1;
  }
  ASSERT_GT(dense_rank, 0);
  ASSERT_GT(bm25_rank, 0);
  EXPECT_FLOAT_EQ(hybrid[0].fused, 1.0f / (kRrfK + dense_rank) + 1.0f / (kRrfK + bm25_rank));
  // min_score applies to the cosine in every mode; a filter too.
  for (SearchMode mode : {SearchMode::kDense, SearchMode::kBm25, SearchMode::kHybrid}) {
    for (const auto& h : retrieve("cats purr", 20, 0.3f, mode)) EXPECT_GE(h.score, 0.3f) << SearchModeName(mode);
    for (const auto& h : retrieve("cats purr", 20, -1, mode, false, {{"topic", "software"}})) {
      EXPECT_EQ(h.chunk.document_id, "rust") << SearchModeName(mode);
    }
    EXPECT_TRUE(retrieve("cats purr", 20, 0.999f, mode).empty()) << SearchModeName(mode);
  }
  EXPECT_TRUE(retrieve("zzzz qqqq", 5, -1, SearchMode::kBm25).empty());  // no word in common
  // Grouping: the cat book's many chunks become one passage (its best); top_k counts documents.
  auto chunks = retrieve("how long do cats sleep", 4, -1, SearchMode::kHybrid);
  int catbook_chunks = 0;
  for (const auto& h : chunks) catbook_chunks += h.chunk.document_id == "catbook";
  EXPECT_GE(catbook_chunks, 2);
  for (SearchMode mode : {SearchMode::kDense, SearchMode::kBm25, SearchMode::kHybrid}) {
    auto grouped = retrieve("how long do cats sleep", 4, -1, mode, /*group=*/true);
    std::set<std::string> ids;
    for (const auto& h : grouped) EXPECT_TRUE(ids.insert(h.chunk.document_id).second) << SearchModeName(mode);
    EXPECT_EQ(grouped[0].chunk.document_id, "catbook") << SearchModeName(mode);
    if (mode != SearchMode::kBm25) {
      EXPECT_EQ(grouped.size(), 4u) << SearchModeName(mode);  // 4 documents though the cat book's chunks rank first
    }
  }
  // The keyword index follows upserts and deletes.
  ASSERT_TRUE(c->Ingest("kb", {{"fault", "The dishwasher works fine now.", {}}}).ok());
  for (const auto& h : retrieve("QX7731", 10, -1, SearchMode::kBm25)) EXPECT_NE(h.chunk.document_id, "fault");
  EXPECT_EQ(retrieve("dishwasher", 10, -1, SearchMode::kBm25).size(), 1u);
  ASSERT_TRUE(c->Delete("kb", {"fault"}).ok());
  EXPECT_TRUE(retrieve("dishwasher", 10, -1, SearchMode::kBm25).empty());
}

}  // namespace
}  // namespace qrag::rag
