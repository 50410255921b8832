#include "server/rag/faiss_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::rag {
namespace {

constexpr int64_t kTombstone = -1;
// A filter keeping at most this fraction of the vectors is served by exact scoring of the kept ones.
constexpr int64_t kExactFilterDivisor = 8;

// FAISS reports errors by throwing (faiss::FaissException, std::bad_alloc): one place turns them into a
// Status so that no exception crosses into the server.
template <typename Fn>
absl::Status CallFaiss(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("FAISS ", what, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("FAISS ", what, ": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FaissIndex>> FaissIndex::Create(int dim, const IndexSpec& spec) {
  if (dim <= 0) return absl::InvalidArgumentError(absl::StrCat("index dimension must be positive, got ", dim));
  if (spec.kind == IndexKind::kExact) return absl::InvalidArgumentError("an exact index is not a FAISS index");
  QRAG_ASSIGN_OR_RETURN(IndexSpec resolved, ResolveIndexSpec(spec));
  if (!(resolved == spec)) return absl::InvalidArgumentError("FaissIndex::Create needs a resolved IndexSpec");
  return std::unique_ptr<FaissIndex>(new FaissIndex(dim, spec));
}

FaissIndex::FaissIndex(int dim, const IndexSpec& spec) : dim_(dim), spec_(spec), vectors_(dim) {}

FaissIndex::~FaissIndex() = default;

int64_t FaissIndex::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(vectors_.size());
}

bool FaissIndex::UsesFaiss() const {
  absl::MutexLock lock(&mu_);
  return index_ != nullptr;
}

int64_t FaissIndex::TombstonesForTest() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(dead_labels_.size());
}

void FaissIndex::TombstoneLocked(int64_t id) {
  auto it = id_labels_.find(id);
  if (it == id_labels_.end()) return;
  label_ids_[it->second] = kTombstone;
  dead_labels_.push_back(it->second);
  id_labels_.erase(it);
}

absl::Status FaissIndex::Upsert(int64_t id, absl::Span<const float> vec) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(vectors_.Upsert(id, vec));
  TombstoneLocked(id);  // a replaced vector gets a new label
  pending_.push_back(id);
  return absl::OkStatus();
}

void FaissIndex::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  if (vectors_.Remove(id)) TombstoneLocked(id);  // a pending id is skipped: it has no vector any more
}

bool FaissIndex::WantFaissLocked() const {
  const int64_t n = static_cast<int64_t>(vectors_.size());
  switch (spec_.kind) {
    case IndexKind::kHnsw:
      return n > 0;
    case IndexKind::kIvf:  // trained centroids stay valid when the collection shrinks
      return index_ != nullptr ? n > 0 : n >= spec_.ivf_nlist;
    case IndexKind::kAuto:  // hysteresis: a collection hovering at the threshold does not rebuild each time
      return index_ != nullptr ? 2 * n >= spec_.auto_threshold : n >= spec_.auto_threshold;
    case IndexKind::kExact:
      break;
  }
  return false;
}

void FaissIndex::DropStructureLocked() {
  index_.reset();
  quantizer_.reset();
  label_ids_.clear();
  id_labels_.clear();
  dead_labels_.clear();
  trained_on_ = 0;
}

absl::Status FaissIndex::BuildLocked() {
  DropStructureLocked();
  pending_.clear();
  const int64_t n = static_cast<int64_t>(vectors_.size());
  QRAG_RETURN_IF_ERROR(CallFaiss("build", [&] {
    if (spec_.kind == IndexKind::kIvf) {
      auto quantizer = std::make_unique<faiss::IndexFlatIP>(dim_);
      auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), dim_, spec_.ivf_nlist,
                                                       faiss::METRIC_INNER_PRODUCT);
      // Train on whatever the collection holds (>= nlist): FAISS's "at least 39 points per centroid" is
      // advice, and its warning on stderr would be noise in the server log.
      ivf->cp.min_points_per_centroid = 1;
      ivf->train(n, vectors_.data());
      quantizer_ = std::move(quantizer);
      index_ = std::move(ivf);
      trained_on_ = n;
    } else {
      auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(dim_, spec_.hnsw_m, faiss::METRIC_INNER_PRODUCT);
      hnsw->hnsw.efConstruction = spec_.hnsw_ef_construction;
      index_ = std::move(hnsw);
    }
  }));
  pending_.reserve(vectors_.size());
  for (size_t r = 0; r < vectors_.size(); ++r) pending_.push_back(vectors_.id(r));
  return AddPendingLocked();
}

absl::Status FaissIndex::AddPendingLocked() {
  std::vector<float> batch;
  std::vector<int64_t> labels;
  for (int64_t id : pending_) {
    if (id_labels_.contains(id)) continue;  // upserted twice since the last Prepare: added once
    const float* v = vectors_.Find(id);
    if (v == nullptr) continue;  // removed since
    const int64_t label = static_cast<int64_t>(label_ids_.size());
    label_ids_.push_back(id);
    id_labels_[id] = label;
    labels.push_back(label);
    batch.insert(batch.end(), v, v + dim_);
  }
  pending_.clear();
  if (labels.empty()) return absl::OkStatus();
  // HNSW numbers vectors in insertion order, so its labels must be its positions.
  QRAG_CHECK(spec_.kind == IndexKind::kIvf ||
             index_->ntotal + static_cast<int64_t>(labels.size()) == static_cast<int64_t>(label_ids_.size()));
  absl::Status added = CallFaiss("add", [&] {
    const auto count = static_cast<faiss::Index::idx_t>(labels.size());
    if (spec_.kind == IndexKind::kIvf) {
      index_->add_with_ids(count, batch.data(), labels.data());
    } else {
      index_->add(count, batch.data());
    }
  });
  // A failed add (out of memory) may have inserted part of the batch: forget the structure, so that the next
  // Prepare rebuilds it from the host copy instead of searching one that lacks labelled vectors.
  if (!added.ok()) DropStructureLocked();
  return added;
}

absl::Status FaissIndex::Prepare() {
  absl::MutexLock lock(&mu_);
  return PrepareLocked();
}

absl::Status FaissIndex::PrepareLocked() {
  if (!WantFaissLocked()) {
    DropStructureLocked();  // exact scoring: free the structure, if any
    pending_.clear();
    return absl::OkStatus();
  }
  const int64_t n = static_cast<int64_t>(vectors_.size());
  const int64_t labels = static_cast<int64_t>(label_ids_.size());
  if (index_ == nullptr || (spec_.kind == IndexKind::kIvf && n > 2 * trained_on_) ||
      (spec_.kind != IndexKind::kIvf && 4 * static_cast<int64_t>(dead_labels_.size()) > labels)) {
    return BuildLocked();
  }
  if (spec_.kind == IndexKind::kIvf && !dead_labels_.empty()) {
    QRAG_RETURN_IF_ERROR(CallFaiss("remove", [&] {
      faiss::IDSelectorBatch selector(dead_labels_.size(), dead_labels_.data());
      index_->remove_ids(selector);
    }));
    dead_labels_.clear();  // they stay kTombstone in label_ids_ (labels are never reused)
  }
  return AddPendingLocked();
}

std::vector<SearchHit> FaissIndex::ExactTopKLocked(const float* query, int k, const std::vector<size_t>* rows) const {
  std::vector<SearchHit> cand;
  auto score = [&](size_t r) { cand.push_back({vectors_.id(r), faiss::fvec_inner_product(query, vectors_.row(r), dim_)}); };
  if (rows != nullptr) {
    cand.reserve(rows->size());
    for (size_t r : *rows) score(r);
  } else {
    cand.reserve(vectors_.size());
    for (size_t r = 0; r < vectors_.size(); ++r) score(r);
  }
  const size_t top = std::min<size_t>(k, cand.size());
  std::partial_sort(cand.begin(), cand.begin() + top, cand.end(), BetterHit);
  cand.resize(top);
  return cand;
}

absl::Status FaissIndex::FaissSearchLocked(const float* queries, int n, int64_t fetch, int nprobe,
                                           std::vector<float>* scores, std::vector<int64_t>* labels) {
  scores->assign(static_cast<size_t>(n) * fetch, 0.0f);
  labels->assign(static_cast<size_t>(n) * fetch, -1);
  // FAISS parallelizes a search over its queries; for one query the other OpenMP threads would only wake up
  // and spin, taking CPU from the encoder and the engine. The thread count is per calling thread: restored.
  const int threads = omp_get_max_threads();
  if (n == 1) omp_set_num_threads(1);
  absl::Status status = CallFaiss("search", [&] {
    if (spec_.kind == IndexKind::kIvf) {
      static_cast<faiss::IndexIVFFlat*>(index_.get())->nprobe = nprobe;
    } else {  // the candidate list must hold at least the candidates asked for
      static_cast<faiss::IndexHNSWFlat*>(index_.get())->hnsw.efSearch =
          static_cast<int>(std::max<int64_t>(spec_.hnsw_ef_search, fetch));
    }
    index_->search(n, queries, fetch, scores->data(), labels->data());
  });
  omp_set_num_threads(threads);
  return status;
}

absl::StatusOr<std::vector<std::vector<SearchHit>>> FaissIndex::Search(const float* queries, int num_queries, int k,
                                                                       const std::function<bool(int64_t)>& keep) {
  if (num_queries < 0 || k < 0) return absl::InvalidArgumentError("num_queries and k must be >= 0");
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(PrepareLocked());
  std::vector<std::vector<SearchHit>> out(num_queries);
  if (vectors_.empty() || num_queries == 0 || k == 0) return out;
  const int64_t n = static_cast<int64_t>(vectors_.size());
  std::vector<size_t> kept_rows;  // with a filter: the rows it accepts
  if (keep) {
    for (size_t r = 0; r < vectors_.size(); ++r) {
      if (keep(vectors_.id(r))) kept_rows.push_back(r);
    }
    if (kept_rows.empty()) return out;
  }
  const int64_t kept = keep ? static_cast<int64_t>(kept_rows.size()) : n;
  const std::vector<size_t>* exact_rows = keep ? &kept_rows : nullptr;
  const int64_t want = std::min<int64_t>(k, kept);
  if (index_ == nullptr || (keep && (kept * kExactFilterDivisor <= n || kept <= k))) {
    for (int q = 0; q < num_queries; ++q) out[q] = ExactTopKLocked(queries + static_cast<size_t>(q) * dim_, k, exact_rows);
    return out;
  }
  // Candidates to fetch so that `want` accepted ones are likely among them: FAISS also returns tombstoned
  // labels and vectors the filter rejects.
  const int64_t total = static_cast<int64_t>(index_->ntotal);
  int64_t fetch = want;
  if (kept < total) {
    fetch = std::min<int64_t>(total, static_cast<int64_t>(std::ceil(2.0 * want * total / kept)));
  }
  int nprobe = spec_.ivf_nprobe;
  std::vector<int> todo(num_queries);
  for (int q = 0; q < num_queries; ++q) todo[q] = q;
  std::vector<float> batch, scores;
  std::vector<int64_t> labels;
  while (!todo.empty()) {
    batch.clear();
    for (int q : todo) {
      const float* query = queries + static_cast<size_t>(q) * dim_;
      batch.insert(batch.end(), query, query + dim_);
    }
    QRAG_RETURN_IF_ERROR(FaissSearchLocked(batch.data(), static_cast<int>(todo.size()), fetch, nprobe, &scores, &labels));
    std::vector<int> short_queries;
    for (size_t i = 0; i < todo.size(); ++i) {
      std::vector<SearchHit>& hits = out[todo[i]];
      hits.clear();
      for (int64_t j = 0; j < fetch; ++j) {
        const int64_t label = labels[i * fetch + j];
        if (label < 0 || label >= static_cast<int64_t>(label_ids_.size())) continue;
        const int64_t id = label_ids_[label];
        if (id == kTombstone || (keep && !keep(id))) continue;
        hits.push_back({id, scores[i * fetch + j]});
      }
      if (static_cast<int64_t>(hits.size()) < want) {
        short_queries.push_back(todo[i]);
        continue;
      }
      std::sort(hits.begin(), hits.end(), BetterHit);
      hits.resize(want);
    }
    todo = std::move(short_queries);
    // Exhausted: IVF scanned every list; HNSW would next walk half the graph or more, which costs more than
    // scoring exactly (and FAISS may not reach every vector: graph islands).
    const bool exhausted = spec_.kind == IndexKind::kIvf ? fetch >= total && nprobe >= spec_.ivf_nlist
                                                          : 2 * fetch >= total;
    if (exhausted) {
      for (int q : todo) out[q] = ExactTopKLocked(queries + static_cast<size_t>(q) * dim_, k, exact_rows);
      break;
    }
    fetch = std::min<int64_t>(total, 2 * fetch);
    nprobe = std::min(spec_.ivf_nlist, 2 * nprobe);
  }
  return out;
}

std::string FaissIndex::Describe() const {
  absl::MutexLock lock(&mu_);
  const size_t n = vectors_.size();
  if (index_ == nullptr) {
    if (spec_.kind == IndexKind::kIvf) {
      return absl::StrCat("ivf: exact search until the collection holds ivf_nlist=", spec_.ivf_nlist,
                          " vectors to train on (holds ", n, ")");
    }
    if (spec_.kind == IndexKind::kAuto) {
      return absl::StrCat("auto: exact search below ", spec_.auto_threshold, " vectors (holds ", n, ")");
    }
    return absl::StrCat("hnsw: empty");
  }
  std::string s = spec_.kind == IndexKind::kIvf
                      ? absl::StrCat("ivf: ", n, " vectors in ", spec_.ivf_nlist, " lists trained on ", trained_on_)
                      : absl::StrCat(spec_.kind == IndexKind::kAuto ? "auto: hnsw graph of " : "hnsw: graph of ",
                                     index_->ntotal, " vectors");
  if (!dead_labels_.empty()) absl::StrAppend(&s, ", ", dead_labels_.size(), " deleted awaiting compaction");
  if (!pending_.empty()) absl::StrAppend(&s, ", ", pending_.size(), " changes pending");
  return s;
}

}  // namespace qrag::rag
