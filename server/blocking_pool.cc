#include "server/blocking_pool.h"

#include <utility>

namespace tessera::server {

BlockingPool::BlockingPool(absl::Duration idle_timeout) : idle_timeout_(idle_timeout) {}

BlockingPool::~BlockingPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    work_.SignalAll();
  }
  // A running task may still Run() another (it then gets a thread of its
  // own): join until no thread is left.
  while (true) {
    std::list<std::thread> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.splice(batch.end(), threads_);  // the threads' iterators stay valid
      exited_.clear();
    }
    if (batch.empty()) return;
    for (std::thread& t : batch) t.join();
  }
}

void BlockingPool::Run(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  // Once stopping, the destructor joins (it holds the exited threads).
  if (!stop_) JoinExited();
  queue_.push_back(std::move(task));
  if (static_cast<int>(queue_.size()) <= idle_) {
    work_.Signal();
    return;
  }
  ++started_;
  const Thread self = threads_.emplace(threads_.end());
  // The new thread takes mu_ first, so it sees *self assigned.
  *self = std::thread(&BlockingPool::Loop, this, self);
}

int BlockingPool::threads() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size() - exited_.size());
}

int BlockingPool::idle_threads() {
  absl::MutexLock lock(&mu_);
  return idle_;
}

int64_t BlockingPool::threads_started() {
  absl::MutexLock lock(&mu_);
  return started_;
}

void BlockingPool::Loop(Thread self) {
  mu_.Lock();
  while (true) {
    ++idle_;
    const absl::Time deadline = absl::Now() + idle_timeout_;
    while (queue_.empty() && !stop_) {
      if (work_.WaitWithDeadline(&mu_, deadline)) break;  // idle too long
    }
    --idle_;
    // A thread that stops waiting takes a queued task if there is one: Run
    // started no thread for it, counting on the idle ones.
    if (queue_.empty()) break;
    absl::AnyInvocable<void() &&> task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    std::move(task)();
    task = nullptr;  // its captures go before the lock is taken again
    mu_.Lock();
  }
  // Joined by the next Run (or the destructor); nothing here touches the
  // pool after the unlock.
  exited_.push_back(self);
  mu_.Unlock();
}

void BlockingPool::JoinExited() {
  for (Thread t : exited_) {
    t->join();
    threads_.erase(t);
  }
  exited_.clear();
}

}  // namespace tessera::server
