#include "server/blocking_pool.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tessera::server {
namespace {

// Tasks that block each get a thread: none waits behind another.
TEST(BlockingPoolTest, BlockedTasksDoNotHoldUpTheNext) {
  BlockingPool pool;
  absl::Notification release;
  std::atomic<int> started{0};
  constexpr int kTasks = 5;
  for (int i = 0; i < kTasks; ++i) {
    pool.Run([&] {
      started.fetch_add(1);
      release.WaitForNotification();
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (started.load() < kTasks && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(started.load(), kTasks);
  EXPECT_EQ(pool.threads(), kTasks);
  release.Notify();
}

// One task at a time, step after step, runs on one thread.
TEST(BlockingPoolTest, IdleThreadsAreReused) {
  BlockingPool pool;
  std::thread::id first;
  int on_first = 0;
  for (int i = 0; i < 50; ++i) {
    absl::Notification done;
    std::thread::id ran_on;
    pool.Run([&] {
      ran_on = std::this_thread::get_id();
      done.Notify();
    });
    done.WaitForNotification();
    if (i == 0) first = ran_on;
    // The thread that ran it becomes idle just after Notify: wait for it to
    // get there, as the next step's pull would come after a while.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (pool.idle_threads() < 1 && absl::Now() < deadline) {
      absl::SleepFor(absl::Microseconds(200));
    }
    if (ran_on == first) ++on_first;
  }
  EXPECT_EQ(on_first, 50);
  EXPECT_EQ(pool.threads_started(), 1);
}

TEST(BlockingPoolTest, IdleThreadsExitAfterTheTimeout) {
  BlockingPool pool(absl::Milliseconds(20));
  absl::Notification a, b;
  pool.Run([&] { a.Notify(); });
  pool.Run([&] { b.Notify(); });
  a.WaitForNotification();
  b.WaitForNotification();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (pool.threads() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(pool.threads(), 0);
  // And a task after that still runs (on a new thread; the exited ones are joined).
  absl::Notification c;
  pool.Run([&] { c.Notify(); });
  EXPECT_TRUE(c.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// The destructor waits for running tasks, and for the tasks they start.
TEST(BlockingPoolTest, DestructionWaitsForRunningTasks) {
  std::atomic<int> finished{0};
  {
    BlockingPool pool;
    for (int i = 0; i < 3; ++i) {
      pool.Run([&pool, &finished] {
        absl::SleepFor(absl::Milliseconds(30));
        pool.Run([&finished] {
          absl::SleepFor(absl::Milliseconds(10));
          finished.fetch_add(1);
        });
        finished.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(finished.load(), 6);
}

}  // namespace
}  // namespace tessera::server
