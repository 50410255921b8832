// A fixed pool of worker threads for data-parallel loops in the CPU backend.
//
// ParallelFor splits [0, n) into contiguous chunks, one per thread (the calling thread takes the first),
// and returns when all chunks are done. It is meant for one caller at a time: the CPU backend owns one
// pool and calls it from the engine thread. Work functions must not throw.
#ifndef QRAG_SERVER_COMMON_THREAD_POOL_H_
#define QRAG_SERVER_COMMON_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qrag {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over chunks of [0, n) whose sizes are multiples of `grain` (except the last).
  // Runs inline when n is small or the pool has one thread.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_THREAD_POOL_H_
