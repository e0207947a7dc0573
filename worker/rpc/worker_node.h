#ifndef TESSERA_WORKER_RPC_WORKER_NODE_H_
#define TESSERA_WORKER_RPC_WORKER_NODE_H_

#include <atomic>
#include <deque>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/rpc/ps_client.h"
#include "worker/rpc/scheduler_link.h"
#include "worker/trainer.h"

namespace tessera::worker {

struct WorkerNodeOptions {
  std::string scheduler;                              // host:port
  std::string name;                                   // stable node name
  absl::Duration rpc_timeout = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(30);  // first registration
  absl::Duration retry_for = absl::Seconds(120);       // scheduler restarts mid-task
  PsClientOptions ps;

  absl::Status Validate() const;
};

// A worker process's life: registers with the scheduler, heartbeats from a
// member thread, and runs the tasks the scheduler assigns, one at a time, on
// the thread that calls Run(). Thread-safe.
class WorkerNode {
 public:
  // `backend` (borrowed; outlives the node) runs every task's model; null: the CPU.
  explicit WorkerNode(WorkerNodeOptions options, ComputeBackend* backend = nullptr);
  ~WorkerNode();

  // Registers (retrying until connect_timeout) and starts heartbeating.
  absl::Status Start();
  // Runs tasks until Stop(). Returns OK after Stop().
  absl::Status Run();
  // Stops the current task between steps and makes Run() return. Safe from any thread.
  void Stop();

 private:
  absl::Status Register() ABSL_LOCKS_EXCLUDED(mu_);
  void HeartbeatLoop();
  void RunTask(const WorkerAssignment& assignment);

  const WorkerNodeOptions options_;
  ComputeBackend* const backend_;
  SchedulerLink link_;
  DatasetCache datasets_;  // used by the Run() thread only
  std::atomic<bool> cancel_task_{false};
  std::thread heartbeat_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string node_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(500);
  std::deque<WorkerAssignment> pending_ ABSL_GUARDED_BY(mu_);
  std::string running_job_ ABSL_GUARDED_BY(mu_);
  int running_rank_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_RPC_WORKER_NODE_H_
