#include "server/rag/id_vectors.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace qrag::rag {

absl::Status IdVectors::Upsert(int64_t id, absl::Span<const float> vec) {
  if (static_cast<int>(vec.size()) != dim_) {
    return absl::InvalidArgumentError(absl::StrCat("vector has ", vec.size(), " dimensions, the index ", dim_));
  }
  auto [it, inserted] = rows_.emplace(id, ids_.size());
  if (inserted) {
    ids_.push_back(id);
    vectors_.insert(vectors_.end(), vec.begin(), vec.end());
  } else {
    std::copy(vec.begin(), vec.end(), vectors_.begin() + it->second * dim_);
  }
  return absl::OkStatus();
}

bool IdVectors::Remove(int64_t id) {
  auto it = rows_.find(id);
  if (it == rows_.end()) return false;
  const size_t row = it->second, last = ids_.size() - 1;
  rows_.erase(it);
  if (row != last) {  // move the last row into the hole
    std::copy(vectors_.begin() + last * dim_, vectors_.begin() + (last + 1) * dim_, vectors_.begin() + row * dim_);
    ids_[row] = ids_[last];
    rows_[ids_[row]] = row;
  }
  ids_.pop_back();
  vectors_.resize(ids_.size() * dim_);
  return true;
}

const float* IdVectors::Find(int64_t id) const {
  auto it = rows_.find(id);
  return it == rows_.end() ? nullptr : row(it->second);
}

}  // namespace qrag::rag
