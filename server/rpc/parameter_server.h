#ifndef TESSERA_SERVER_RPC_PARAMETER_SERVER_H_
#define TESSERA_SERVER_RPC_PARAMETER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/rpc/parameter_service.h"
#include "server/shard_store.h"

namespace tessera::server {

// A parameter server in-process: a ShardStore, the ParameterService over it
// and the gRPC server that serves it. Used by tessera-server's main and by
// tests that run several servers in one process.
// Start/Stop from one thread; store() and port() are safe from any thread
// between them.
class ParameterServer {
 public:
  struct Options {
    ShardStore::Options store;
    ParameterServiceImpl::Options service;
    // How long Stop() lets in-flight RPCs finish before cancelling them.
    absl::Duration shutdown_grace = absl::Seconds(2);
  };

  ParameterServer() : ParameterServer(Options()) {}
  explicit ParameterServer(Options options);
  ~ParameterServer();  // Stop()s
  ParameterServer(const ParameterServer&) = delete;
  ParameterServer& operator=(const ParameterServer&) = delete;

  // Listens on host:port (port 0 picks a free one; IPv6 hosts without
  // brackets are fine). UNAVAILABLE when it cannot listen,
  // FAILED_PRECONDITION when already started.
  absl::Status Start(const std::string& host, int port);

  // The bound port; 0 before Start().
  int port() const { return port_; }

  // Wakes every waiting pull (CANCELLED), then shuts the gRPC server down,
  // giving in-flight calls Options::shutdown_grace. Idempotent. The store is
  // shut down for good: a stopped server cannot be started again.
  void Stop();

  ShardStore* store() { return &store_; }

 private:
  const Options options_;
  ShardStore store_;
  ParameterServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// "host:port", with brackets around an IPv6 host.
std::string JoinHostPort(const std::string& host, int port);

}  // namespace tessera::server

#endif  // TESSERA_SERVER_RPC_PARAMETER_SERVER_H_
