#ifndef TESSERA_TOOLS_LOCAL_CLUSTER_H_
#define TESSERA_TOOLS_LOCAL_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tools/child_process.h"

namespace tessera::tools {

struct LocalClusterOptions {
  std::string bin_dir;   // holds tessera-scheduler, tessera-server, tessera-worker
  std::string out_dir;   // logs/, the scheduler's db and port files go here
  int servers = 2;
  int workers = 2;
  std::string log_level = "info";
  std::string worker_device = "auto";  // each worker's --device
  int heartbeat_timeout_ms = 5000;
  absl::Duration start_timeout = absl::Seconds(30);
};

// A whole Tessera cluster on 127.0.0.1 as child processes: one scheduler,
// S servers and W workers, each on a free port, each logging to
// out_dir/logs/<name>.log. Used by one thread.
class LocalCluster {
 public:
  explicit LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}
  ~LocalCluster() { Stop(); }

  // Starts everything and waits until every node has registered.
  absl::Status Start();
  // Workers first, then servers, then the scheduler; SIGTERM then SIGKILL.
  void Stop();
  // An error naming the first child that exited, with the end of its log.
  absl::Status CheckHealth();

  // Kills the scheduler with `sig` (e.g. SIGKILL) and waits for it to exit.
  void KillScheduler(int sig);
  // Starts the scheduler again on the same port and database.
  absl::Status RestartScheduler();

  const std::string& scheduler_address() const { return scheduler_address_; }
  ChildProcess* server(int i) { return servers_.at(i).get(); }
  ChildProcess* worker(int i) { return workers_.at(i).get(); }
  std::string logs_dir() const { return options_.out_dir + "/logs"; }

 private:
  absl::StatusOr<int> WaitForPortFile(ChildProcess* child, const std::string& path);
  // Starts the scheduler on `port` (0: any) and sets scheduler_address_.
  absl::Status StartScheduler(int port);

  const LocalClusterOptions options_;
  std::string scheduler_address_;
  int scheduler_port_ = 0;
  std::unique_ptr<ChildProcess> scheduler_;
  std::vector<std::unique_ptr<ChildProcess>> servers_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_LOCAL_CLUSTER_H_
