#ifndef TESSERA_COMMON_KEYED_EXECUTOR_H_
#define TESSERA_COMMON_KEYED_EXECUTOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace tessera {

// A fixed set of threads, each with its own FIFO queue; a task goes to the
// thread its key picks (key % threads). Tasks of one key therefore run one at
// a time, in the order submitted, and tasks of keys on different threads run
// in parallel with no lock between them. The shard store keys optimizer steps
// by slice, so every slice is updated in commit order by one thread; the PS
// client keys the writes of a push's stripes by stripe, so they go out on
// several cores at once.
// Thread-safe. The destructor runs what is queued, then joins.
class KeyedExecutor {
 public:
  // `threads` >= 1.
  explicit KeyedExecutor(int threads);
  ~KeyedExecutor();
  KeyedExecutor(const KeyedExecutor&) = delete;
  KeyedExecutor& operator=(const KeyedExecutor&) = delete;

  // Queues `task` on the thread for `key`. A task must not block on another
  // task of this executor.
  void Submit(uint64_t key, absl::AnyInvocable<void() &&> task);

  int threads() const { return static_cast<int>(workers_.size()); }

  // A thread count for a server: the machine's cores, at least 1, at most 8.
  static int DefaultThreads();

 private:
  struct Worker {
    absl::Mutex mu;
    std::deque<absl::AnyInvocable<void() &&>> queue ABSL_GUARDED_BY(mu);
    bool stop ABSL_GUARDED_BY(mu) = false;
    std::thread thread;
  };
  static void Run(Worker* w);

  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_KEYED_EXECUTOR_H_
