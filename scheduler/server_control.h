#ifndef TESSERA_SCHEDULER_SERVER_CONTROL_H_
#define TESSERA_SCHEDULER_SERVER_CONTROL_H_

#include <string>

#include "absl/status/status.h"
#include "proto/parameter_service.pb.h"

namespace tessera::scheduler {

// The scheduler's calls to parameter servers. The gRPC implementation is
// scheduler/rpc/grpc_server_control.h; tests use fakes. Thread-safe.
class ServerControl {
 public:
  virtual ~ServerControl() = default;
  virtual absl::Status CreateJob(const std::string& address, const CreateJobRequest& request) = 0;
  virtual absl::Status SetLiveWorkers(const std::string& address,
                                      const SetLiveWorkersRequest& request) = 0;
  virtual absl::Status DropJob(const std::string& address, const DropJobRequest& request) = 0;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_SERVER_CONTROL_H_
