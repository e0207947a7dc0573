#include "scheduler/rpc/scheduler_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"

namespace tessera::scheduler {

absl::Status SchedulerServer::Start(const std::string& host, int port) {
  TESSERA_RETURN_IF_ERROR(options_.Validate());
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, JobStore::Open(db_path_));
  scheduler_ = std::make_unique<Scheduler>(options_, std::move(store), &clock_, &control_);
  TESSERA_RETURN_IF_ERROR(scheduler_->Init());
  service_ = std::make_unique<SchedulerServiceImpl>(scheduler_.get());
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(host, ":", port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
  ConfigureServerBuilder(&builder);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  ticker_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.heartbeat_interval)) scheduler_->Tick();
  });
  return absl::OkStatus();
}

void SchedulerServer::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (ticker_.joinable()) ticker_.join();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
}

}  // namespace tessera::scheduler
