#ifndef TESSERA_WORKER_RPC_SCHEDULER_LINK_H_
#define TESSERA_WORKER_RPC_SCHEDULER_LINK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "proto/scheduler_service.grpc.pb.h"
#include "worker/trainer.h"

namespace tessera::worker {

// The worker's calls to the scheduler over gRPC. Calls that must not be lost
// (registering tensors, finishing a task) are retried while the scheduler is
// unreachable, up to `retry_for`, so a scheduler restart does not fail the task.
// Thread-safe.
class SchedulerLink : public TaskReporter {
 public:
  SchedulerLink(const std::string& address, absl::Duration rpc_timeout, absl::Duration retry_for);

  const std::string& address() const { return address_; }

  absl::StatusOr<RegisterNodeResponse> RegisterNode(const RegisterNodeRequest& request);
  absl::StatusOr<HeartbeatResponse> Heartbeat(const std::string& node_id);

  absl::StatusOr<TensorPlan> RegisterTensors(const std::string& job_id, int rank,
                                             const std::vector<TensorSpec>& tensors) override;
  absl::StatusOr<bool> ReportProgress(const std::string& job_id, const WorkerProgress& progress,
                                      double wall_seconds) override;
  absl::Status FinishTask(const FinishTaskRequest& request) override;

 private:
  const std::string address_;
  const absl::Duration rpc_timeout_;
  const absl::Duration retry_for_;
  std::unique_ptr<SchedulerService::Stub> stub_;
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_RPC_SCHEDULER_LINK_H_
