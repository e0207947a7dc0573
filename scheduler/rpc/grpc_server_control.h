#ifndef TESSERA_SCHEDULER_RPC_GRPC_SERVER_CONTROL_H_
#define TESSERA_SCHEDULER_RPC_GRPC_SERVER_CONTROL_H_

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/parameter_service.grpc.pb.h"
#include "scheduler/server_control.h"

namespace tessera::scheduler {

// ServerControl over ParameterService stubs, one cached channel per address.
// Each call has a deadline; errors name the server. Thread-safe.
class GrpcServerControl : public ServerControl {
 public:
  explicit GrpcServerControl(absl::Duration timeout = absl::Seconds(10)) : timeout_(timeout) {}

  absl::Status CreateJob(const std::string& address, const CreateJobRequest& request) override;
  absl::Status SetLiveWorkers(const std::string& address, const SetLiveWorkersRequest& request) override;
  absl::Status DropJob(const std::string& address, const DropJobRequest& request) override;

 private:
  ParameterService::Stub* Stub(const std::string& address);

  const absl::Duration timeout_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ParameterService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_RPC_GRPC_SERVER_CONTROL_H_
