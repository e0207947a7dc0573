#ifndef TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_
#define TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/rpc/grpc_server_control.h"
#include "scheduler/rpc/scheduler_service.h"
#include "scheduler/scheduler.h"

namespace tessera::scheduler {

// A whole scheduler in one object: the SQLite store, the Scheduler (and its
// tick thread), the gRPC service and server, and the ServerControl it uses to
// reach parameter servers. Lets tests run a scheduler in-process.
// Start() and Stop() are called from one thread; port() from any.
class SchedulerServer {
 public:
  // Opens nothing yet. `clock` (the real clock when null) must outlive this.
  SchedulerServer(SchedulerOptions options, std::string db_path, Clock* clock = nullptr);
  ~SchedulerServer();  // Stop()s.
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  // Opens the database, loads its jobs and serves on host:port (port 0: any
  // free port). UNAVAILABLE naming the path when the database cannot be
  // opened, naming the address when the port cannot be bound.
  // REQUIRES: called at most once.
  absl::Status Start(const std::string& host, int port);
  // The bound port; 0 before Start().
  int port() const { return port_; }
  // Stops serving (in-flight calls get 2 s to finish) and ticking. Idempotent.
  void Stop();

 private:
  const SchedulerOptions options_;
  const std::string db_path_;
  RealClock real_clock_;
  Clock* const clock_;
  GrpcServerControl control_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_RPC_SCHEDULER_SERVER_H_
