#include "server/common/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace qrag {
namespace {

using Clock = std::chrono::steady_clock;

// Tells the core that this is a spin loop (on x86, pause: saves power and yields the core's resources to
// its sibling hyperthread).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or kSpinBeforeBlock has passed; returns done()'s last value. The first few
// microseconds spin on pause (a hand-over between threads that each have a core takes well under one);
// after that each round yields the core, so that when the pool has more threads than free cores (other
// processes, a loaded machine) the thread being waited for can run on this one instead of waiting for the
// spinner's time slice to end. The clock is read once per 16 pauses (a pause is tens of cycles) and after
// every yield (a system call), so the spin ends within a yield of kSpinBeforeBlock.
constexpr std::chrono::microseconds kPauseSpin{2};

template <typename Done>
bool SpinUntil(const Done& done) {
  const Clock::time_point start = Clock::now();
  for (int round = 1;; ++round) {
    if (done()) return true;
    CpuRelax();
    if (round % 16 == 0 && Clock::now() - start >= kPauseSpin) break;
  }
  while (Clock::now() - start < ThreadPool::kSpinBeforeBlock) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ranges_.resize(num_threads);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  { std::lock_guard<std::mutex> lock(mu_); }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

uint64_t ThreadPool::WaitForWork(uint64_t seen) {
  if (SpinUntil([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
    return generation_.load(std::memory_order_acquire);
  }
  std::unique_lock<std::mutex> lock(mu_);
  sleeping_workers_.fetch_add(1);
  work_cv_.wait(lock, [&] { return generation_.load() != seen; });
  sleeping_workers_.fetch_sub(1);
  return generation_.load(std::memory_order_acquire);
}

void ThreadPool::WaitForWorkers(bool spin) {
  if (spin && SpinUntil([&] { return pending_.load(std::memory_order_acquire) == 0; })) return;
  std::unique_lock<std::mutex> lock(mu_);
  caller_sleeping_.store(true);
  done_cv_.wait(lock, [&] { return pending_.load() == 0; });
  caller_sleeping_.store(false);
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    seen = WaitForWork(seen);
    if (stop_.load(std::memory_order_acquire)) return;
    const auto [begin, end] = ranges_[index];
    if (begin < end) (*fn_)(begin, end);
    // The last worker out wakes the caller if it went to sleep (Dekker with WaitForWorkers).
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  const int64_t units = (n + grain - 1) / grain;
  if (threads == 1 || units < 2) {
    fn(0, n);
    return;
  }
  // Contiguous chunks of whole grains, as even as possible.
  const int64_t per = units / threads, extra = units % threads;
  int64_t unit = 0;
  for (int t = 0; t < threads; ++t) {
    const int64_t take = per + (t < extra ? 1 : 0);
    ranges_[t] = {std::min(n, unit * grain), std::min(n, (unit + take) * grain)};
    unit += take;
  }
  fn_ = &fn;
  pending_.store(threads - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // publishes ranges_, fn_ and pending_
  // Wake sleeping workers (Dekker with WaitForWork); the lock orders this after a worker's predicate check.
  const bool woke_workers = sleeping_workers_.load() > 0;
  if (woke_workers) {
    { std::lock_guard<std::mutex> lock(mu_); }
    work_cv_.notify_all();
  }
  if (ranges_[0].first < ranges_[0].second) fn(ranges_[0].first, ranges_[0].second);
  // A worker that was asleep takes a scheduler wake-up (tens of microseconds on a virtual machine whose
  // idle vCPU has halted) and may well have been woken onto this very core: spinning would only delay it.
  WaitForWorkers(/*spin=*/!woke_workers);
}

}  // namespace qrag
