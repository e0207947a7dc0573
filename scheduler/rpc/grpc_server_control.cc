#include "scheduler/rpc/grpc_server_control.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"

namespace tessera::scheduler {

ParameterService::Stub* GrpcServerControl::Stub(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (!stub) stub = ParameterService::NewStub(MakeChannel(address));
  return stub.get();
}

absl::Status GrpcServerControl::CreateJob(const std::string& address, const CreateJobRequest& request) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_);
  CreateJobResponse response;
  return FromGrpcStatus(Stub(address)->CreateJob(&ctx, request, &response),
                        absl::StrCat("create ", request.job_id(), " on server ", address));
}

absl::Status GrpcServerControl::SetLiveWorkers(const std::string& address,
                                               const SetLiveWorkersRequest& request) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_);
  SetLiveWorkersResponse response;
  return FromGrpcStatus(Stub(address)->SetLiveWorkers(&ctx, request, &response),
                        absl::StrCat("set live workers of ", request.job_id(), " on server ", address));
}

absl::Status GrpcServerControl::DropJob(const std::string& address, const DropJobRequest& request) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, timeout_);
  DropJobResponse response;
  return FromGrpcStatus(Stub(address)->DropJob(&ctx, request, &response),
                        absl::StrCat("drop ", request.job_id(), " on server ", address));
}

}  // namespace tessera::scheduler
