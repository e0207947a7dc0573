#ifndef TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_
#define TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/rpc/grpc_server_control.h"
#include "scheduler/rpc/scheduler_service.h"
#include "scheduler/scheduler.h"

namespace tessera::scheduler {

// A whole scheduler in one object: the SQLite store, the Scheduler, its gRPC
// service and the thread that ticks it. Thread-safe.
class SchedulerServer {
 public:
  SchedulerServer(SchedulerOptions options, std::string db_path)
      : options_(options), db_path_(std::move(db_path)) {}
  ~SchedulerServer() { Stop(); }

  // Opens the database and listens on host:port (port 0: any free port).
  absl::Status Start(const std::string& host, int port);
  int port() const { return port_; }
  // Stops serving and ticking. Idempotent.
  void Stop();

 private:
  const SchedulerOptions options_;
  const std::string db_path_;
  RealClock clock_;
  GrpcServerControl control_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Notification stop_;
  std::thread ticker_;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_
