#include "server/common/work_queue.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "tests/test_util.h"

namespace qrag {
namespace {

TEST(WorkQueue, RunsEveryTaskOnItsThreads) {
  std::atomic<int> ran{0};
  {
    WorkQueue q(WorkQueueOptions{.threads = 3, .max_queued = 1000, .name = "test"});
    EXPECT_EQ(q.threads(), 3);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(q.Submit([&ran] { ran.fetch_add(1); }).ok());
  }  // the destructor runs what is queued, then joins
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkQueue, FullQueueRefusesAtOnceWithResourceExhausted) {
  absl::Notification release;
  absl::Notification started;
  WorkQueue q(WorkQueueOptions{.threads = 1, .max_queued = 2, .name = "rag"});
  ASSERT_TRUE(q.Submit([&] {
                 started.Notify();
                 release.WaitForNotification();
               }).ok());
  started.WaitForNotification();  // the one worker is busy: what follows waits in the queue
  ASSERT_TRUE(q.Submit([] {}).ok());
  ASSERT_TRUE(q.Submit([] {}).ok());
  const absl::Status full = q.Submit([] {});
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("rag queue full"), absl::string_view::npos) << full;
  EXPECT_EQ(q.queued(), 2);
  release.Notify();
}

TEST(WorkQueue, ShutdownRunsWhatIsQueuedThenRefuses) {
  std::atomic<int> ran{0};
  WorkQueue q(WorkQueueOptions{.threads = 2, .max_queued = 100, .name = "work"});
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(q.Submit([&ran] { ran.fetch_add(1); }).ok());
  q.Shutdown();
  EXPECT_EQ(ran.load(), 50);
  const absl::Status refused = q.Submit([&ran] { ran.fetch_add(1); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  q.Shutdown();  // idempotent; the destructor after it too
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace qrag
