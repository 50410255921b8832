#include "server/rag/collections.h"

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/model/utf8.h"
#include "server/rag/postgres_store.h"

namespace qrag::rag {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

absl::Status ValidateName(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError("collection name must be 1 to 128 characters of [A-Za-z0-9_.-]");
  }
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("collection name ", Echo(name), " has a character outside [A-Za-z0-9_.-]"));
    }
  }
  return absl::OkStatus();
}

std::string EmbedderDirName(const std::string& model_id) { return model_id.substr(0, model_id.find('@')); }

}  // namespace

absl::StatusOr<std::unique_ptr<Collections>> Collections::Open(const CollectionsOptions& options,
                                                               model::BertEncoder* encoder,
                                                               backend::Backend* index_backend) {
  std::unique_ptr<Collections> c(new Collections());
  c->options_ = options;
  c->encoder_ = encoder;
  c->index_backend_ = index_backend;
  if (!options.store.empty()) {
    if (options.max_store_bytes > 0) {
      return absl::InvalidArgumentError("a store size cap (--rag-max-store-bytes) applies to SQLite only: "
                                        "PostgreSQL's disk is the database administrator's");
    }
    QRAG_ASSIGN_OR_RETURN(c->store_, OpenPostgresStore(options.store));
  } else {
    if (options.data_dir.empty()) {
      return absl::InvalidArgumentError("the RAG data directory is not set (--data-dir)");
    }
    std::error_code ec;
    std::filesystem::create_directories(options.data_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create the data directory ", options.data_dir, ": ", ec.message()));
    }
    QRAG_ASSIGN_OR_RETURN(c->store_, DocumentStore::Open(options.data_dir + "/rag.sqlite", options.max_store_bytes));
  }
  // A shared store: the change log's position before loading, so that whatever commits during the load is
  // applied again by the follower (idempotent), never missed.
  c->caught_up_at_.store(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  if (c->store_->shared()) {
    QRAG_ASSIGN_OR_RETURN(c->applied_seq_, c->store_->LatestChange());
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<CollectionInfo> stored, c->store_->ListCollections());
  for (const CollectionInfo& info : stored) {
    QRAG_ASSIGN_OR_RETURN(std::shared_ptr<Entry> e, c->LoadEntry(info));
    absl::MutexLock map_lock(&c->mu_);
    c->entries_[info.name] = std::move(e);
  }
  if (c->store_->shared()) c->follower_ = std::thread([p = c.get()] { p->Follow(); });
  return c;
}

Collections::~Collections() {
  stop_.store(true);
  if (follower_.joinable()) follower_.join();
}

absl::StatusOr<std::shared_ptr<Collections::Entry>> Collections::LoadEntry(const CollectionInfo& info) {
  auto e = std::make_shared<Entry>();
  e->info = info;
  QRAG_ASSIGN_OR_RETURN(e->index, MakeIndex(info));
  absl::Status bad;
  absl::MutexLock lock(&e->mu);
  QRAG_RETURN_IF_ERROR(store_->ForEachChunk(
      info.name, [&](int64_t id, const std::string& doc, absl::Span<const float> v) {
        absl::Status s = e->index->Upsert(id, v);
        if (!s.ok() && bad.ok()) bad = absl::DataLossError(absl::StrCat("collection '", info.name, "' chunk ", id, ": ", s.message()));
        e->chunk_docs[id] = doc;
        e->doc_chunks[doc].push_back(id);
      }));
  QRAG_RETURN_IF_ERROR(bad);
  absl::Status built = e->index->Prepare();  // HNSW graph / IVF lists / exact matrix, before serving
  if (!built.ok()) {
    return absl::Status(built.code(), absl::StrCat("collection '", info.name, "': building its ",
                                                   IndexKindName(info.index.kind), " index: ", built.message()));
  }
  return e;
}

double Collections::index_lag_seconds() const {
  if (!store_->shared()) return 0;
  return std::max(0.0, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) - caught_up_at_.load());
}

void Collections::Follow() {
  constexpr int kBatch = 1000;
  while (!stop_.load()) {
    store_->WaitForChange(absl::Milliseconds(kFollowPollMs));
    if (stop_.load()) break;
    const double poll_began = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
    absl::StatusOr<std::vector<DocumentStore::Change>> changes = store_->ChangesSince(applied_seq_, kBatch);
    if (!changes.ok()) {  // the database is away: the lag grows; caught up from applied_seq_ when back
      if (options_.observer != nullptr) options_.observer->OnIndexLag(index_lag_seconds());
      continue;
    }
    bool all = true;
    {
      absl::MutexLock write(&write_mu_);
      for (const DocumentStore::Change& change : *changes) {
        if (!ApplyChange(change).ok()) {
          all = false;  // retried at the next poll, from this change
          break;
        }
        applied_seq_ = change.seq;
        if (options_.observer != nullptr) {
          options_.observer->OnChangeApplied(
              std::max(0.0, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) - change.committed_unix_seconds));
        }
      }
    }
    if (all && static_cast<int>(changes->size()) < kBatch) caught_up_at_.store(poll_began);
    if (options_.observer != nullptr) options_.observer->OnIndexLag(index_lag_seconds());
  }
}

absl::Status Collections::ApplyChange(const DocumentStore::Change& change) {
  const std::string& name = change.collection;
  if (change.kind == "drop" || change.kind == "create") {
    {
      absl::MutexLock lock(&mu_);
      if (change.kind == "create" && entries_.count(name) > 0) return absl::OkStatus();  // this replica's own
      entries_.erase(name);  // a drop; or a create after a drop this replica has not seen: load it afresh
    }
    QRAG_RETURN_IF_ERROR(store_->FollowCollection(name));
    if (change.kind == "drop") return absl::OkStatus();
    absl::StatusOr<CollectionInfo> info = store_->GetCollection(name);
    if (absl::IsNotFound(info.status())) return absl::OkStatus();  // dropped again since: a later change says so
    QRAG_RETURN_IF_ERROR(info.status());
    QRAG_ASSIGN_OR_RETURN(std::shared_ptr<Entry> e, LoadEntry(*info));
    absl::MutexLock lock(&mu_);
    entries_[name] = std::move(e);
    return absl::OkStatus();
  }
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return absl::OkStatus();  // a collection dropped since
    e = it->second;
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<DocumentStore::ChunkVector> now, store_->FollowDocument(name, change.document_id));
  absl::MutexLock lock(&e->mu);
  std::set<int64_t> keep;
  for (const DocumentStore::ChunkVector& c : now) keep.insert(c.id);
  auto old = e->doc_chunks.find(change.document_id);
  if (old != e->doc_chunks.end()) {
    for (int64_t id : old->second) {
      if (keep.count(id) > 0) continue;
      e->index->Remove(id);
      e->chunk_docs.erase(id);
    }
    e->doc_chunks.erase(old);
  }
  std::vector<int64_t> ids;
  for (const DocumentStore::ChunkVector& c : now) {
    QRAG_RETURN_IF_ERROR(e->index->Upsert(c.id, c.embedding));
    e->chunk_docs[c.id] = change.document_id;
    ids.push_back(c.id);
  }
  if (!ids.empty()) e->doc_chunks[change.document_id] = std::move(ids);
  if (e->info.index.kind != IndexKind::kExact) e->index->Prepare().IgnoreError();  // as in Ingest
  return absl::OkStatus();
}

absl::Status Collections::CheckEmbedder(const CollectionInfo& info) const {
  const std::string precision = backend::PrecisionName(encoder_->precision());
  if (info.embedder != encoder_->model_id() || info.precision != precision) {
    return absl::FailedPreconditionError(absl::StrCat(
        "collection '", info.name, "' was embedded with ", info.embedder, " (", info.precision,
        "); this server's embedder is ", encoder_->model_id(), " (", precision,
        "): restart the server with that embedder, or re-create the collection and ingest again"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VectorIndex>> Collections::MakeIndex(const CollectionInfo& info) const {
  return CreateVectorIndex(info.index, info.dim, options_.index_precision, index_backend_);
}

absl::StatusOr<std::shared_ptr<Collections::Entry>> Collections::Find(const std::string& name, bool check_embedder) {
  QRAG_RETURN_IF_ERROR(ValidateName(name));
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      return absl::NotFoundError(absl::StrCat("collection ", Echo(name), " does not exist (ListCollections shows them)"));
    }
    e = it->second;
  }
  if (check_embedder) QRAG_RETURN_IF_ERROR(CheckEmbedder(e->info));
  return e;
}

absl::StatusOr<CollectionInfo> Collections::Create(const std::string& name, const std::string& embedder,
                                                   const ChunkingOptions& chunking, const IndexSpec& index) {
  QRAG_RETURN_IF_ERROR(ValidateName(name));
  QRAG_RETURN_IF_ERROR(ValidateChunkingOptions(chunking, encoder_->max_seq_length() - 2));
  QRAG_ASSIGN_OR_RETURN(const IndexSpec resolved, ResolveIndexSpec(index));
  if (!embedder.empty() && embedder != encoder_->model_id() && embedder != EmbedderDirName(encoder_->model_id())) {
    return absl::FailedPreconditionError(absl::StrCat("embedder ", Echo(embedder), " is not loaded; this server embeds with ",
                                                      encoder_->model_id(), " (leave embedder empty to use it)"));
  }
  CollectionInfo info;
  info.name = name;
  info.embedder = encoder_->model_id();
  info.precision = backend::PrecisionName(encoder_->precision());
  info.dim = encoder_->dim();
  info.chunk_tokens = chunking.chunk_tokens;
  info.chunk_overlap = chunking.overlap_tokens;
  info.index = resolved;
  auto e = std::make_shared<Entry>();
  e->info = info;
  QRAG_ASSIGN_OR_RETURN(e->index, MakeIndex(info));  // before storing: a collection never lacks its index
  absl::MutexLock write(&write_mu_);
  QRAG_RETURN_IF_ERROR(store_->CreateCollection(info));
  absl::MutexLock lock(&mu_);
  entries_[name] = std::move(e);
  return info;
}

absl::StatusOr<std::vector<CollectionInfo>> Collections::List() {
  QRAG_ASSIGN_OR_RETURN(std::vector<CollectionInfo> list, store_->ListCollections());
  for (CollectionInfo& info : list) {
    std::shared_ptr<Entry> e;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(info.name);
      if (it != entries_.end()) e = it->second;
    }
    if (e == nullptr) continue;  // dropped or created meanwhile
    const std::string live = e->index->Describe();
    info.index_status = info.index_status.empty() ? live : absl::StrCat(info.index_status, " (", live, ")");
    info.index_lag_seconds = index_lag_seconds();
  }
  return list;
}

absl::Status Collections::Drop(const std::string& name) {
  QRAG_RETURN_IF_ERROR(ValidateName(name));
  absl::MutexLock write(&write_mu_);
  QRAG_RETURN_IF_ERROR(store_->DropCollection(name));
  absl::MutexLock lock(&mu_);
  entries_.erase(name);
  return absl::OkStatus();
}

absl::StatusOr<IngestResult> Collections::Ingest(const std::string& collection, const std::vector<DocumentInput>& docs) {
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<Entry> e, Find(collection, /*check_embedder=*/true));
  if (docs.empty()) return absl::InvalidArgumentError("no documents to ingest");
  std::set<std::string> seen;
  for (size_t i = 0; i < docs.size(); ++i) {
    const DocumentInput& d = docs[i];
    const std::string where = absl::StrCat("document ", i, d.id.empty() ? "" : absl::StrCat(" (", Echo(d.id), ")"));
    if (d.id.empty() || d.id.size() > 512) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": id must be 1 to 512 bytes"));
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(d.id, absl::StrCat(where, " id")));
    if (!seen.insert(d.id).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": id appears twice in one request"));
    }
    if (static_cast<int64_t>(d.text.size()) > options_.max_document_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": text is ", d.text.size(), " bytes, the limit is ",
                                                     options_.max_document_bytes, " (split the document)"));
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(d.text, absl::StrCat(where, " text")));
    for (const auto& [k, v] : d.metadata) {
      QRAG_RETURN_IF_ERROR(model::CheckUtf8(k, absl::StrCat(where, " metadata key")));
      QRAG_RETURN_IF_ERROR(model::CheckUtf8(v, absl::StrCat(where, " metadata value")));
    }
  }
  const ChunkingOptions chunking{e->info.chunk_tokens, e->info.chunk_overlap};
  std::vector<StoredDocument> stored(docs.size());
  std::vector<std::vector<int32_t>> all_tokens;
  IngestResult result;
  for (size_t i = 0; i < docs.size(); ++i) {
    QRAG_ASSIGN_OR_RETURN(std::vector<Chunk> chunks, ChunkText(docs[i].text, encoder_->tokenizer(), chunking));
    if (chunks.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("document ", i, " (", Echo(docs[i].id), "): text is empty (no tokens)"));
    }
    stored[i].id = docs[i].id;
    stored[i].text = docs[i].text;
    stored[i].metadata = docs[i].metadata;
    for (Chunk& c : chunks) {
      stored[i].chunks.push_back({std::move(c.text), {}});
      all_tokens.push_back(std::move(c.tokens));
    }
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<float> emb, encoder_->EmbedTokens(all_tokens));
  for (const std::vector<int32_t>& t : all_tokens) result.tokens += static_cast<int64_t>(t.size()) + 2;
  const int dim = encoder_->dim();
  size_t row = 0;
  for (StoredDocument& d : stored) {
    for (StoredChunk& c : d.chunks) {
      c.embedding.assign(emb.begin() + row * dim, emb.begin() + (row + 1) * dim);
      ++row;
    }
  }
  absl::MutexLock write(&write_mu_);
  {
    absl::MutexLock lock(&mu_);  // dropped meanwhile?
    auto it = entries_.find(collection);
    if (it == entries_.end() || it->second != e) {
      return absl::NotFoundError(absl::StrCat("collection ", Echo(collection), " was dropped during the ingest"));
    }
  }
  std::vector<std::vector<int64_t>> added;
  std::vector<int64_t> removed;
  QRAG_RETURN_IF_ERROR(store_->UpsertDocuments(collection, stored, &added, &removed, &result.replaced));
  // Committed: now the index follows.
  absl::MutexLock lock(&e->mu);
  for (int64_t id : removed) {
    e->index->Remove(id);
    e->chunk_docs.erase(id);
  }
  for (size_t d = 0; d < stored.size(); ++d) {
    for (size_t c = 0; c < added[d].size(); ++c) {
      QRAG_RETURN_IF_ERROR(e->index->Upsert(added[d][c], stored[d].chunks[c].embedding));
      e->chunk_docs[added[d][c]] = stored[d].id;
    }
    e->doc_chunks[stored[d].id] = added[d];
    result.chunks += static_cast<int64_t>(added[d].size());
  }
  if (e->info.index.kind != IndexKind::kExact) {
    // FAISS: insert now, on the ingesting thread, rather than in the next search. The documents are stored
    // whatever happens here; a failure is reported by the next search, which prepares again.
    e->index->Prepare().IgnoreError();
  }
  result.documents = static_cast<int64_t>(stored.size());
  return result;
}

absl::StatusOr<int64_t> Collections::Delete(const std::string& collection, const std::vector<std::string>& ids) {
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<Entry> e, Find(collection, /*check_embedder=*/false));
  if (ids.empty()) return absl::InvalidArgumentError("no document ids to delete");
  absl::MutexLock write(&write_mu_);
  int64_t deleted = 0;
  std::vector<int64_t> removed;
  QRAG_RETURN_IF_ERROR(store_->DeleteDocuments(collection, ids, &deleted, &removed));
  absl::MutexLock lock(&e->mu);
  for (int64_t id : removed) {
    e->index->Remove(id);
    e->chunk_docs.erase(id);
  }
  for (const std::string& id : ids) e->doc_chunks.erase(id);
  if (e->info.index.kind != IndexKind::kExact) e->index->Prepare().IgnoreError();  // as in Ingest
  return deleted;
}

absl::StatusOr<int> Collections::CheckQuery(int top_k, float min_score, std::string_view field_prefix) const {
  const std::string prefix(field_prefix);
  if (top_k < 0 || top_k > options_.max_top_k) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "top_k must be in [0, ", options_.max_top_k, "] (0: ",
                                                   kDefaultTopK, "), got ", top_k));
  }
  if (!(min_score >= -1.0f && min_score <= 1.0f)) {  // also NaN
    return absl::InvalidArgumentError(absl::StrCat(prefix, "min_score is a cosine similarity: it must be in [-1, 1] (",
                                                   "-1 keeps every passage), got ", min_score));
  }
  return top_k == 0 ? kDefaultTopK : top_k;
}

const char* SearchModeName(SearchMode mode) {
  switch (mode) {
    case SearchMode::kDense:
      return "dense";
    case SearchMode::kBm25:
      return "bm25";
    case SearchMode::kHybrid:
      return "hybrid";
  }
  return "?";
}

namespace {

// One candidate of a search: its chunk id, cosine, BM25 (0: no word matched) and fused score.
struct Candidate {
  int64_t id = 0;
  float cosine = 0;
  float bm25 = 0;
  float fused = 0;
};

}  // namespace

absl::StatusOr<std::vector<RetrievedChunk>> Collections::Retrieve(const std::string& collection, const std::string& query,
                                                                  int top_k, float min_score, const Metadata& filter,
                                                                  RetrieveTimings* timings, const RetrieveOptions& how) {
  if (query.empty()) return absl::InvalidArgumentError("query is empty");
  QRAG_ASSIGN_OR_RETURN(top_k, CheckQuery(top_k, min_score, ""));
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<Entry> e, Find(collection, /*check_embedder=*/true));
  auto t0 = Clock::now();
  // Every mode embeds the query: the cosine is each result's score and what min_score applies to.
  QRAG_ASSIGN_OR_RETURN(std::vector<float> q, encoder_->Embed({query}));
  const double embed_seconds = Since(t0);
  if (timings != nullptr) timings->embed_seconds = embed_seconds;
  if (options_.observer != nullptr) options_.observer->OnEmbed(embed_seconds);
  t0 = Clock::now();
  std::set<std::string> allowed;
  if (!filter.empty()) {
    QRAG_ASSIGN_OR_RETURN(std::vector<std::string> docs, store_->FindDocuments(collection, filter));
    allowed.insert(docs.begin(), docs.end());
  }
  std::vector<Candidate> ranked;  // best first by the mode, min_score and grouping applied
  {
    absl::MutexLock lock(&e->mu);
    std::function<bool(int64_t)> keep;
    if (!filter.empty()) {
      keep = [&](int64_t id) {
        auto it = e->chunk_docs.find(id);
        return it != e->chunk_docs.end() && allowed.count(it->second) > 0;
      };
    }
    const int64_t total = static_cast<int64_t>(e->chunk_docs.size());
    const bool dense = how.mode != SearchMode::kBm25;
    const bool keywords = how.mode != SearchMode::kDense;
    // Candidates of each ranker: n, or for fusion at least kFusionDepth; grown (x4) while min_score or the
    // grouping leave fewer than top_k and a ranker may hold more.
    for (int64_t n = top_k;; n *= 4) {
      const int depth = static_cast<int>(std::min<int64_t>(
          std::max<int64_t>(n, how.mode == SearchMode::kHybrid ? kFusionDepth : 0), std::max<int64_t>(total, 1)));
      std::vector<SearchHit> dense_hits;
      std::vector<DocumentStore::KeywordHit> keyword_hits;
      {
        absl::MutexLock search(&search_mu_);
        if (dense) {
          QRAG_ASSIGN_OR_RETURN(auto all, e->index->Search(q.data(), 1, depth, keep));
          dense_hits = std::move(all[0]);
        }
      }
      if (keywords) {
        QRAG_ASSIGN_OR_RETURN(keyword_hits, store_->KeywordSearch(collection, query, depth, [&](int64_t id) {
          return e->chunk_docs.count(id) > 0 && (!keep || keep(id));
        }));
      }
      std::map<int64_t, Candidate> by_id;
      for (size_t r = 0; r < dense_hits.size(); ++r) {
        Candidate& c = by_id[dense_hits[r].id];
        c.id = dense_hits[r].id;
        c.cosine = dense_hits[r].score;
        c.fused += 1.0f / static_cast<float>(kRrfK + r + 1);
      }
      std::set<int64_t> need_cosine;
      for (size_t r = 0; r < keyword_hits.size(); ++r) {
        auto [it, fresh] = by_id.try_emplace(keyword_hits[r].id);
        Candidate& c = it->second;
        c.id = keyword_hits[r].id;
        c.bm25 = keyword_hits[r].bm25;
        c.fused += 1.0f / static_cast<float>(kRrfK + r + 1);
        if (fresh) need_cosine.insert(c.id);
      }
      if (!need_cosine.empty()) {  // the keyword-only candidates' cosines: a search restricted to them
        absl::MutexLock search(&search_mu_);
        QRAG_ASSIGN_OR_RETURN(auto all, e->index->Search(q.data(), 1, static_cast<int>(need_cosine.size()),
                                                         [&](int64_t id) { return need_cosine.count(id) > 0; }));
        for (const SearchHit& h : all[0]) by_id[h.id].cosine = h.score;
      }
      std::vector<Candidate> order;
      order.reserve(by_id.size());
      for (auto& [id, c] : by_id) order.push_back(c);
      auto by_cosine = [](const Candidate& a, const Candidate& b) {
        return a.cosine != b.cosine ? a.cosine > b.cosine : a.id < b.id;
      };
      switch (how.mode) {
        case SearchMode::kDense:
          std::sort(order.begin(), order.end(), by_cosine);
          break;
        case SearchMode::kBm25:
          std::sort(order.begin(), order.end(), [](const Candidate& a, const Candidate& b) {
            return a.bm25 != b.bm25 ? a.bm25 > b.bm25 : a.id < b.id;
          });
          break;
        case SearchMode::kHybrid:
          std::sort(order.begin(), order.end(), [&](const Candidate& a, const Candidate& b) {
            return a.fused != b.fused ? a.fused > b.fused : by_cosine(a, b);
          });
          break;
      }
      ranked.clear();
      std::set<std::string> seen_docs;
      for (const Candidate& c : order) {
        if (static_cast<int>(ranked.size()) >= top_k) break;
        if (c.cosine < min_score) continue;
        auto doc = e->chunk_docs.find(c.id);
        if (doc == e->chunk_docs.end()) continue;  // removed meanwhile
        if (how.group_by_document && !seen_docs.insert(doc->second).second) continue;
        ranked.push_back(c);
      }
      // Dense order is the cosine's: past the first below min_score, more candidates cannot help.
      if (how.mode == SearchMode::kDense && !how.group_by_document) break;
      const bool more = static_cast<int64_t>(dense_hits.size()) >= depth ||
                        static_cast<int64_t>(keyword_hits.size()) >= depth;
      if (static_cast<int>(ranked.size()) >= top_k || !more || depth >= total) break;
    }
  }
  std::vector<int64_t> ids;
  for (const Candidate& c : ranked) ids.push_back(c.id);
  QRAG_ASSIGN_OR_RETURN(std::vector<ChunkRecord> records, store_->GetChunks(ids));
  const double search_seconds = Since(t0);
  if (timings != nullptr) timings->search_seconds = search_seconds;
  if (options_.observer != nullptr) options_.observer->OnSearch(search_seconds);
  std::vector<RetrievedChunk> out;
  for (size_t i = 0, j = 0; i < records.size(); ++i) {
    while (j < ranked.size() && ranked[j].id != records[i].id) ++j;  // a chunk deleted meanwhile is skipped
    if (j == ranked.size()) break;
    out.push_back({.chunk = std::move(records[i]), .score = ranked[j].cosine, .bm25 = ranked[j].bm25,
                   .fused = how.mode == SearchMode::kHybrid ? ranked[j].fused : 0.0f});
  }
  return out;
}

absl::StatusOr<std::vector<float>> Collections::Embed(const std::vector<std::string>& texts, int64_t* tokens) {
  if (texts.empty()) return absl::InvalidArgumentError("no texts to embed");
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) return absl::InvalidArgumentError(absl::StrCat("text ", i, " is empty"));
    if (static_cast<int64_t>(texts[i].size()) > options_.max_document_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("text ", i, " is over ", options_.max_document_bytes, " bytes"));
    }
  }
  return encoder_->Embed(texts, tokens);
}

}  // namespace qrag::rag
