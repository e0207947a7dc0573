#include "scheduler/rpc/scheduler_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"

namespace tessera::scheduler {

SchedulerServer::SchedulerServer(SchedulerOptions options, std::string db_path, Clock* clock)
    : options_(options),
      db_path_(std::move(db_path)),
      clock_(clock != nullptr ? clock : &real_clock_) {}

SchedulerServer::~SchedulerServer() { Stop(); }

absl::Status SchedulerServer::Start(const std::string& host, int port) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, JobStore::Open(db_path_));
  TESSERA_ASSIGN_OR_RETURN(scheduler_,
                           Scheduler::Create(options_, std::move(store), clock_, &control_));
  service_ = std::make_unique<SchedulerServiceImpl>(scheduler_.get());
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(host, ":", port);
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  ConfigureServerBuilder(&builder);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || bound == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  port_ = bound;
  scheduler_->Start();
  return absl::OkStatus();
}

void SchedulerServer::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
  if (scheduler_) scheduler_->Stop();
}

}  // namespace tessera::scheduler
