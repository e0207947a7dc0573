#include "scheduler/rpc/scheduler_service.h"

#include "common/rpc/grpc_status.h"

namespace tessera::scheduler {
namespace {

// Runs the core call and copies its value into the response.
template <typename Resp, typename Call>
grpc::Status Serve(Resp* response, Call call) {
  auto result = call();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(result).value();
  return grpc::Status::OK;
}

}  // namespace

#define TESSERA_SCHEDULER_METHOD(Method, Req, Resp)                                   \
  grpc::Status SchedulerServiceImpl::Method(grpc::ServerContext*, const Req* request, \
                                            Resp* response) {                        \
    return Serve(response, [&] { return scheduler_->Method(*request); });            \
  }

TESSERA_SCHEDULER_METHOD(RegisterNode, RegisterNodeRequest, RegisterNodeResponse)
TESSERA_SCHEDULER_METHOD(Heartbeat, HeartbeatRequest, HeartbeatResponse)
TESSERA_SCHEDULER_METHOD(SubmitJob, SubmitJobRequest, SubmitJobResponse)
TESSERA_SCHEDULER_METHOD(GetJob, GetJobRequest, JobInfo)
TESSERA_SCHEDULER_METHOD(ListJobs, ListJobsRequest, ListJobsResponse)
TESSERA_SCHEDULER_METHOD(CancelJob, CancelJobRequest, CancelJobResponse)
TESSERA_SCHEDULER_METHOD(ListNodes, ListNodesRequest, ListNodesResponse)
TESSERA_SCHEDULER_METHOD(RegisterTensors, RegisterTensorsRequest, RegisterTensorsResponse)
TESSERA_SCHEDULER_METHOD(ReportProgress, ReportProgressRequest, ReportProgressResponse)
TESSERA_SCHEDULER_METHOD(FinishTask, FinishTaskRequest, FinishTaskResponse)
TESSERA_SCHEDULER_METHOD(GetJobMetrics, GetJobMetricsRequest, GetJobMetricsResponse)

#undef TESSERA_SCHEDULER_METHOD

}  // namespace tessera::scheduler
