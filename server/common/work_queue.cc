#include "server/common/work_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qrag {

WorkQueue::WorkQueue(const WorkQueueOptions& options) : options_(options) {
  const int n = std::max(1, options.threads);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkQueue::~WorkQueue() { Shutdown(); }

void WorkQueue::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

absl::Status WorkQueue::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError(absl::StrCat(options_.name, " queue: shutting down"));
  if (static_cast<int>(tasks_.size()) >= std::max(1, options_.max_queued)) {
    return absl::ResourceExhaustedError(absl::StrCat(options_.name, " queue full (", tasks_.size(),
                                                     " requests waiting for ", threads_.size(),
                                                     " workers); retry later"));
  }
  tasks_.push_back(std::move(task));
  return absl::OkStatus();
}

int WorkQueue::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tasks_.size());
}

bool WorkQueue::ReadyLocked() const { return stopping_ || !tasks_.empty(); }

void WorkQueue::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkQueue::ReadyLocked));
      if (tasks_.empty()) return;  // stopping, and every queued task ran
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace qrag
