#include "server/common/thread_pool.h"

#include <algorithm>

namespace qrag {

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    std::pair<int64_t, int64_t> range;
    const std::function<void(int64_t, int64_t)>* fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      range = ranges_[index];
      fn = fn_;
    }
    if (range.first < range.second) (*fn)(range.first, range.second);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  const int64_t units = (n + grain - 1) / grain;
  if (threads == 1 || units < 2) {
    fn(0, n);
    return;
  }
  // Contiguous chunks of whole grains, as even as possible.
  std::vector<std::pair<int64_t, int64_t>> ranges(threads);
  const int64_t per = units / threads, extra = units % threads;
  int64_t unit = 0;
  for (int t = 0; t < threads; ++t) {
    int64_t take = per + (t < extra ? 1 : 0);
    int64_t b = std::min(n, unit * grain), e = std::min(n, (unit + take) * grain);
    ranges[t] = {b, e};
    unit += take;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_ = std::move(ranges);
    fn_ = &fn;
    pending_ = threads - 1;
    ++generation_;
  }
  work_cv_.notify_all();
  if (ranges_[0].first < ranges_[0].second) fn(ranges_[0].first, ranges_[0].second);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
}

}  // namespace qrag
