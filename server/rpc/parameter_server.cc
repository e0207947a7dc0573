#include "server/rpc/parameter_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "common/rpc/grpc_status.h"

namespace tessera::server {

std::string JoinHostPort(const std::string& host, int port) {
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

ParameterServer::ParameterServer(Options options)
    : options_(options), store_(options_.store), service_(&store_, options_.service) {}

ParameterServer::~ParameterServer() { Stop(); }

absl::Status ParameterServer::Start(const std::string& host, int port) {
  if (server_ != nullptr) return absl::FailedPreconditionError("parameter server already started");
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port must be in 0..65535, got ", port));
  }
  const std::string address = JoinHostPort(host, port);
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  ConfigureServerBuilder(&builder);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound == 0) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    return absl::UnavailableError(absl::StrCat("parameter server cannot listen on ", address));
  }
  port_ = bound;
  return absl::OkStatus();
}

void ParameterServer::Stop() {
  store_.Shutdown();
  if (server_ == nullptr) return;
  service_.CancelStreams();  // idle between operations, they would wait out the grace
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.shutdown_grace)));
  server_->Wait();
  server_.reset();
}

}  // namespace tessera::server
