#include "common/keyed_executor.h"

#include <algorithm>
#include <utility>

namespace tessera {

KeyedExecutor::KeyedExecutor(int threads) {
  const int n = std::max(threads, 1);
  for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) w->thread = std::thread(&KeyedExecutor::Run, w.get());
}

KeyedExecutor::~KeyedExecutor() {
  for (auto& w : workers_) {
    absl::MutexLock lock(&w->mu);
    w->stop = true;
  }
  for (auto& w : workers_) w->thread.join();
}

void KeyedExecutor::Submit(uint64_t key, absl::AnyInvocable<void() &&> task) {
  Worker* w = workers_[key % workers_.size()].get();
  absl::MutexLock lock(&w->mu);
  w->queue.push_back(std::move(task));
}

int KeyedExecutor::DefaultThreads() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 1, 8);
}

void KeyedExecutor::Run(Worker* w) {
  while (true) {
    absl::AnyInvocable<void() &&> task;
    {
      absl::MutexLock lock(&w->mu);
      auto ready = [w]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu) {
        return w->stop || !w->queue.empty();
      };
      w->mu.Await(absl::Condition(&ready));
      if (w->queue.empty()) return;  // stopping, and nothing left to run
      task = std::move(w->queue.front());
      w->queue.pop_front();
    }
    std::move(task)();
  }
}

}  // namespace tessera
