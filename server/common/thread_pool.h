// A fixed pool of worker threads for data-parallel loops in the CPU backend.
//
// ParallelFor splits [0, n) into contiguous chunks, one per thread (the calling thread takes the first),
// and returns when all chunks are done. It is meant for one caller at a time: the CPU backend owns one
// pool and calls it from the engine thread. Work functions must not throw.
//
// Dispatch cost: decode issues a ParallelFor per GEMM, several per layer and token, each only tens of
// microseconds long, so waking sleeping threads through a condition variable on every call (a futex call
// and a scheduler wake-up each way, 5-40 us measured on the 2-vCPU development VM) would cost as much as
// the work. Workers and the caller therefore wait on atomics for a short while (kSpinBeforeBlock) before
// they block: back-to-back calls hand work over in well under a microsecond, while an idle pool (the server
// waiting for requests) sleeps on condition variables and burns no CPU after that spin. The spin pauses for
// its first microseconds and then yields the core on every round, so that a thread being waited for that
// shares this core (more threads than free cores) gets to run. A caller that had to wake a sleeping
// worker blocks at once instead of spinning: that wake-up takes tens of microseconds anyway.
#ifndef QRAG_SERVER_COMMON_THREAD_POOL_H_
#define QRAG_SERVER_COMMON_THREAD_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace qrag {

class ThreadPool {
 public:
  // How long a worker spins for the next call, and the caller for the workers to finish, before blocking.
  static constexpr std::chrono::microseconds kSpinBeforeBlock{50};

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
  // Returns the first generation other than `seen` (spinning, then blocking on work_cv_).
  uint64_t WaitForWork(uint64_t seen);
  // Returns once every worker has finished the current generation (spinning first if `spin`, then
  // blocking on done_cv_).
  void WaitForWorkers(bool spin);

  std::vector<std::thread> workers_;
  // Written by the caller before it publishes a generation, read by the workers after they see it.
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;

  // Handshake. A new generation publishes ranges_ and fn_; pending_ counts the workers still running it.
  // The sleeping flags tell the other side whether a notify is needed; each flag and the counter it
  // guards are written and then the other read in sequentially consistent order (Dekker), so that a
  // thread about to block and a thread skipping the notify cannot miss each other.
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
};

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_THREAD_POOL_H_
