#include "common/keyed_executor.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(KeyedExecutorTest, TasksOfOneKeyRunInSubmissionOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  {
    KeyedExecutor executor(3);
    for (int i = 0; i < 200; ++i) {
      executor.Submit(5, [&, i] {
        absl::MutexLock lock(&mu);
        order.push_back(i);
      });
    }
  }  // the destructor runs everything queued
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], i);
}

TEST(KeyedExecutorTest, KeysOnDifferentThreadsRunInParallel) {
  KeyedExecutor executor(2);
  absl::Notification first_started, second_ran;
  std::atomic<bool> second_seen_while_first_waited{false};
  // Key 0's task waits for key 1's: with one thread for both this would time out.
  executor.Submit(0, [&] {
    first_started.Notify();
    second_seen_while_first_waited =
        second_ran.WaitForNotificationWithTimeout(absl::Seconds(30));
  });
  first_started.WaitForNotification();
  executor.Submit(1, [&] { second_ran.Notify(); });
  // Key 0 still takes work after, in order: this runs once the first returned.
  absl::Notification first_done;
  executor.Submit(0, [&] { first_done.Notify(); });
  first_done.WaitForNotification();
  EXPECT_TRUE(second_seen_while_first_waited);
}

TEST(KeyedExecutorTest, ZeroThreadsMeansOne) {
  KeyedExecutor executor(0);
  EXPECT_EQ(executor.threads(), 1);
  absl::Notification ran;
  executor.Submit(123, [&] { ran.Notify(); });
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_GE(KeyedExecutor::DefaultThreads(), 1);
  EXPECT_LE(KeyedExecutor::DefaultThreads(), 8);
}

}  // namespace
}  // namespace tessera
