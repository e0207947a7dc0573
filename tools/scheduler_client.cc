#include "tools/scheduler_client.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"

namespace tessera::tools {

SchedulerClient::SchedulerClient(const std::string& address, absl::Duration timeout)
    : address_(address), timeout_(timeout), stub_(SchedulerService::NewStub(MakeChannel(address))) {}

template <typename Req, typename Resp, typename Method>
absl::Status SchedulerClient::Call(Method method, const Req& request, Resp* response) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_);
  const grpc::Status st = ((*stub_).*method)(&ctx, request, response);
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(absl::StrCat("scheduler at ", address_, " did not answer within ",
                                                    absl::FormatDuration(timeout_)));
  }
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(absl::StrCat("cannot reach the scheduler at ", address_, " (",
                                               st.error_message(),
                                               "); is tessera-scheduler running there? see --scheduler"));
  }
  return FromGrpcStatus(st, absl::StrCat("scheduler at ", address_));
}

absl::StatusOr<std::string> SchedulerClient::Submit(const JobSpec& spec) {
  SubmitJobRequest request;
  *request.mutable_spec() = spec;
  SubmitJobResponse response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::SubmitJob, request, &response));
  return response.job_id();
}

absl::StatusOr<JobInfo> SchedulerClient::GetJob(const std::string& job_id) {
  GetJobRequest request;
  request.set_job_id(job_id);
  JobInfo response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::GetJob, request, &response));
  return response;
}

absl::StatusOr<std::vector<JobInfo>> SchedulerClient::ListJobs() {
  ListJobsResponse response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::ListJobs, ListJobsRequest(), &response));
  return std::vector<JobInfo>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<JobState> SchedulerClient::Cancel(const std::string& job_id) {
  CancelJobRequest request;
  request.set_job_id(job_id);
  CancelJobResponse response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::CancelJob, request, &response));
  return response.state();
}

absl::StatusOr<std::vector<NodeInfo>> SchedulerClient::ListNodes() {
  ListNodesResponse response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::ListNodes, ListNodesRequest(), &response));
  return std::vector<NodeInfo>(response.nodes().begin(), response.nodes().end());
}

absl::StatusOr<std::vector<MetricPoint>> SchedulerClient::GetMetrics(const std::string& job_id,
                                                                     int64_t after_step) {
  GetJobMetricsRequest request;
  request.set_job_id(job_id);
  request.set_after_step(after_step);
  GetJobMetricsResponse response;
  TESSERA_RETURN_IF_ERROR(Call(&SchedulerService::Stub::GetJobMetrics, request, &response));
  return std::vector<MetricPoint>(response.points().begin(), response.points().end());
}

}  // namespace tessera::tools
