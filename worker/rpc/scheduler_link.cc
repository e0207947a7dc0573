#include "worker/rpc/scheduler_link.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/grpc_status.h"
#include "spdlog/spdlog.h"

namespace tessera::worker {
namespace {

// Calls `rpc(ctx)` until it succeeds, fails with a code other than
// UNAVAILABLE, or `retry_for` has passed.
template <typename Rpc>
absl::Status CallWithRetry(absl::Duration timeout, absl::Duration retry_for,
                           absl::string_view what, Rpc rpc) {
  const absl::Time give_up = absl::Now() + retry_for;
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    grpc::ClientContext ctx;
    SetTimeout(&ctx, timeout);
    absl::Status st = FromGrpcStatus(rpc(&ctx), what);
    if (st.ok() || st.code() != absl::StatusCode::kUnavailable || absl::Now() + backoff > give_up) {
      return st;
    }
    spdlog::warn("{} (retrying)", std::string(st.message()));
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace

SchedulerLink::SchedulerLink(const std::string& address, absl::Duration rpc_timeout,
                             absl::Duration retry_for)
    : address_(address),
      rpc_timeout_(rpc_timeout),
      retry_for_(retry_for),
      stub_(SchedulerService::NewStub(MakeChannel(address))) {}

absl::StatusOr<RegisterNodeResponse> SchedulerLink::RegisterNode(
    const RegisterNodeRequest& request) {
  RegisterNodeResponse response;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, rpc_timeout_);
  absl::Status st = FromGrpcStatus(stub_->RegisterNode(&ctx, request, &response),
                                   absl::StrCat("register with scheduler ", address_));
  if (!st.ok()) return st;
  return response;
}

absl::StatusOr<HeartbeatResponse> SchedulerLink::Heartbeat(const std::string& node_id) {
  HeartbeatRequest request;
  request.set_node_id(node_id);
  HeartbeatResponse response;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, rpc_timeout_);
  absl::Status st = FromGrpcStatus(stub_->Heartbeat(&ctx, request, &response),
                                   absl::StrCat("heartbeat to scheduler ", address_));
  if (!st.ok()) return st;
  return response;
}

absl::StatusOr<TensorPlan> SchedulerLink::RegisterTensors(const std::string& job_id, int rank,
                                                          const std::vector<TensorSpec>& tensors) {
  RegisterTensorsRequest request;
  request.set_job_id(job_id);
  request.set_rank(rank);
  for (const TensorSpec& t : tensors) *request.add_tensors() = t;
  RegisterTensorsResponse response;
  absl::Status st = CallWithRetry(
      rpc_timeout_, retry_for_, absl::StrCat("register tensors with scheduler ", address_),
      [&](grpc::ClientContext* ctx) { return stub_->RegisterTensors(ctx, request, &response); });
  if (!st.ok()) return st;
  return response.plan();
}

absl::StatusOr<bool> SchedulerLink::ReportProgress(const std::string& job_id,
                                                   const WorkerProgress& progress,
                                                   double wall_seconds) {
  ReportProgressRequest request;
  request.set_job_id(job_id);
  *request.mutable_progress() = progress;
  request.set_wall_seconds(wall_seconds);
  ReportProgressResponse response;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, rpc_timeout_);
  absl::Status st = FromGrpcStatus(stub_->ReportProgress(&ctx, request, &response),
                                   absl::StrCat("report progress to scheduler ", address_));
  if (st.code() == absl::StatusCode::kUnavailable ||
      st.code() == absl::StatusCode::kDeadlineExceeded) {
    // Progress is advisory: training goes on while the scheduler restarts.
    spdlog::warn("{}", std::string(st.message()));
    return false;
  }
  if (!st.ok()) return st;
  return response.cancelled();
}

absl::Status SchedulerLink::FinishTask(const FinishTaskRequest& request) {
  FinishTaskResponse response;
  return CallWithRetry(
      rpc_timeout_, retry_for_, absl::StrCat("finish task with scheduler ", address_),
      [&](grpc::ClientContext* ctx) { return stub_->FinishTask(ctx, request, &response); });
}

}  // namespace tessera::worker
