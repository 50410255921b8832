// A fixed set of worker threads running queued tasks, with a bounded queue.
//
// The server's blocking request work (RAG query embedding and search, ingest batches, retrieval calls) runs
// here rather than on gRPC's callback threads: those are few, and a health check or a cheap call must never
// wait behind an encoder forward. A full queue refuses new work at once (RESOURCE_EXHAUSTED), so a burst of
// RAG calls cannot pile up unbounded memory or latency.
//
// Thread-safe. Tasks must not throw and must not block forever (the destructor waits for them).
#ifndef QRAG_SERVER_COMMON_WORK_QUEUE_H_
#define QRAG_SERVER_COMMON_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace qrag {

struct WorkQueueOptions {
  int threads = 4;        // >= 1
  int max_queued = 256;   // tasks waiting for a thread (not counting the running ones); >= 1
  std::string name = "work";  // in error messages
};

class WorkQueue {
 public:
  explicit WorkQueue(const WorkQueueOptions& options);
  // Runs the tasks already queued, then joins the threads.
  ~WorkQueue();

  // The same, now: Submit is UNAVAILABLE from now on; returns once every queued task ran. Idempotent; not from
  // a task of this queue.
  void Shutdown();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task` to run on a worker thread. RESOURCE_EXHAUSTED, with nothing queued, when max_queued tasks
  // are already waiting; UNAVAILABLE once the queue is shutting down.
  absl::Status Submit(std::function<void()> task);

  int queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WorkQueueOptions options_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_WORK_QUEUE_H_
