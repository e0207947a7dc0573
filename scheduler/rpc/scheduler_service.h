#ifndef TESSERA_SCHEDULER_RPC_SCHEDULER_SERVICE_H_
#define TESSERA_SCHEDULER_RPC_SCHEDULER_SERVICE_H_

#include "proto/scheduler_service.grpc.pb.h"
#include "scheduler/scheduler.h"

namespace tessera::scheduler {

// SchedulerService over gRPC: each method calls the Scheduler and maps its
// status. Thread-safe.
class SchedulerServiceImpl final : public SchedulerService::Service {
 public:
  explicit SchedulerServiceImpl(Scheduler* scheduler) : scheduler_(scheduler) {}

  grpc::Status RegisterNode(grpc::ServerContext*, const RegisterNodeRequest*, RegisterNodeResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const HeartbeatRequest*, HeartbeatResponse*) override;
  grpc::Status SubmitJob(grpc::ServerContext*, const SubmitJobRequest*, SubmitJobResponse*) override;
  grpc::Status GetJob(grpc::ServerContext*, const GetJobRequest*, JobInfo*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const ListJobsRequest*, ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const CancelJobRequest*, CancelJobResponse*) override;
  grpc::Status ListNodes(grpc::ServerContext*, const ListNodesRequest*, ListNodesResponse*) override;
  grpc::Status RegisterTensors(grpc::ServerContext*, const RegisterTensorsRequest*, RegisterTensorsResponse*) override;
  grpc::Status ReportProgress(grpc::ServerContext*, const ReportProgressRequest*, ReportProgressResponse*) override;
  grpc::Status FinishTask(grpc::ServerContext*, const FinishTaskRequest*, FinishTaskResponse*) override;
  grpc::Status GetJobMetrics(grpc::ServerContext*, const GetJobMetricsRequest*, GetJobMetricsResponse*) override;

 private:
  Scheduler* const scheduler_;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_RPC_SCHEDULER_SERVICE_H_
