#ifndef TESSERA_SERVER_BLOCKING_POOL_H_
#define TESSERA_SERVER_BLOCKING_POOL_H_

#include <cstdint>
#include <deque>
#include <list>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tessera::server {

// Threads for tasks that block (a pull waiting for the other workers): each
// task starts at once, on a thread that is idle or else on a new one, so no
// task ever waits behind another. A thread that has been idle for
// `idle_timeout` exits; in a steady run the threads are reused step after
// step instead of one being created per waiting pull. Thread-safe. The
// destructor waits for the running tasks, then joins every thread.
class BlockingPool {
 public:
  explicit BlockingPool(absl::Duration idle_timeout = absl::Seconds(10));
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  void Run(absl::AnyInvocable<void() &&> task);

  // Threads alive now, those of them waiting for a task, and threads
  // started since construction.
  int threads();
  int idle_threads();
  int64_t threads_started();

 private:
  using Thread = std::list<std::thread>::iterator;
  void Loop(Thread self);
  void JoinExited() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration idle_timeout_;
  absl::Mutex mu_;
  absl::CondVar work_;  // a task was queued, or stop_
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting for a task
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t started_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<Thread> exited_ ABSL_GUARDED_BY(mu_);  // returned or returning: to join
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_BLOCKING_POOL_H_
