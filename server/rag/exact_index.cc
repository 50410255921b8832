#include "server/rag/exact_index.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::rag {

absl::StatusOr<std::unique_ptr<ExactIndex>> ExactIndex::Create(int dim, backend::Precision precision,
                                                                backend::Backend* backend) {
  if (dim <= 0) return absl::InvalidArgumentError(absl::StrCat("index dimension must be positive, got ", dim));
  if (precision != backend::Precision::kF32 && precision != backend::Precision::kInt8) {
    return absl::InvalidArgumentError(absl::StrCat("exact index precision must be fp32 or int8, got ",
                                                   backend::PrecisionName(precision)));
  }
  return std::unique_ptr<ExactIndex>(new ExactIndex(dim, precision, backend));
}

int64_t ExactIndex::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(vectors_.size());
}

std::string ExactIndex::Describe() const {
  absl::MutexLock lock(&mu_);
  return absl::StrCat("exact ", backend::PrecisionName(precision_), ": ", vectors_.size(), " vectors");
}

absl::Status ExactIndex::Upsert(int64_t id, absl::Span<const float> vec) {
  absl::MutexLock lock(&mu_);
  QRAG_RETURN_IF_ERROR(vectors_.Upsert(id, vec));
  dirty_ = true;
  return absl::OkStatus();
}

void ExactIndex::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  if (vectors_.Remove(id)) dirty_ = true;
}

absl::Status ExactIndex::Prepare() {
  absl::MutexLock lock(&mu_);
  return dirty_ ? RebuildLocked() : absl::OkStatus();
}

absl::Status ExactIndex::RebuildLocked() {
  weight_ = backend::Weight();
  if (!vectors_.empty()) {
    QRAG_ASSIGN_OR_RETURN(weight_, backend_->UploadWeight(vectors_.data(), static_cast<int64_t>(vectors_.size()), dim_,
                                                          precision_, nullptr));
  }
  dirty_ = false;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<SearchHit>>> ExactIndex::Search(const float* queries, int num_queries, int k,
                                                                       const std::function<bool(int64_t)>& keep) {
  if (num_queries < 0 || k < 0) return absl::InvalidArgumentError("num_queries and k must be >= 0");
  absl::MutexLock lock(&mu_);
  std::vector<std::vector<SearchHit>> out(num_queries);
  if (vectors_.empty() || num_queries == 0 || k == 0) return out;
  if (dirty_) QRAG_RETURN_IF_ERROR(RebuildLocked());
  const int64_t n = static_cast<int64_t>(vectors_.size());
  QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer x, backend_->Allocate(sizeof(float) * num_queries * dim_));
  QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer y, backend_->Allocate(sizeof(float) * num_queries * n));
  QRAG_RETURN_IF_ERROR(backend_->CopyToDevice(queries, sizeof(float) * num_queries * dim_, x.data()));
  backend_->Gemm(x.as<float>(), num_queries, weight_, y.as<float>());
  std::vector<float> scores(static_cast<size_t>(num_queries) * n);
  QRAG_RETURN_IF_ERROR(backend_->CopyToHost(y.data(), scores.size() * sizeof(float), scores.data()));
  QRAG_RETURN_IF_ERROR(backend_->Synchronize());
  std::vector<SearchHit> cand;
  for (int q = 0; q < num_queries; ++q) {
    cand.clear();
    const float* row = scores.data() + static_cast<size_t>(q) * n;
    for (int64_t r = 0; r < n; ++r) {
      if (keep && !keep(vectors_.id(r))) continue;
      cand.push_back({vectors_.id(r), row[r]});
    }
    const size_t top = std::min<size_t>(k, cand.size());
    std::partial_sort(cand.begin(), cand.begin() + top, cand.end(), BetterHit);
    out[q].assign(cand.begin(), cand.begin() + top);
  }
  return out;
}

}  // namespace qrag::rag
