// tessera-worker: registers with the scheduler and runs the training tasks it assigns.

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/memory.h"
#include "common/signals.h"
#include "spdlog/spdlog.h"
#include "worker/compute_backend.h"
#include "worker/device.h"
#include "worker/rpc/worker_node.h"

ABSL_FLAG(std::string, scheduler, "", "Scheduler address, host:port (required).");
ABSL_FLAG(std::string, name, "", "Stable node name; default worker-<pid>.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(int, rpc_timeout_s, 10, "Deadline of each call to the scheduler, seconds.");
ABSL_FLAG(int, connect_timeout_s, 30, "How long to keep trying to reach the scheduler at start.");
ABSL_FLAG(std::string, device, "auto",
          "Where the model's math runs: auto (a GPU when one is present, else the CPU), cpu, "
          "cuda (= cuda:0) or cuda:N. Asking for cuda without a device or a CUDA build is an "
          "error.");
ABSL_FLAG(int, pull_timeout_s, 300,
          "How long a pull may wait for fresher parameters (sync barrier) before failing.");
ABSL_FLAG(int, streams, tessera::worker::PsClientOptions().streams,
          "Streams each push and pull aims for over all parameter servers: with fewer servers, "
          "a server's share (256 KiB a stripe at least) is striped over several TCP "
          "connections to it.");

int main(int argc, char** argv) {
  tessera::RestartWithHugePageMalloc(argv);
  tessera::BlockTerminationSignals();
  tessera::KeepLargeAllocations();
  tessera::DisableMutexDeadlockDetection();
  absl::SetProgramUsageMessage(
      "Tessera worker: trains on its data shard and pushes/pulls through the parameter "
      "servers.\nUsage: tessera-worker --scheduler=HOST:PORT [--name=NAME] "
      "[--device=auto|cpu|cuda[:N]]");
  absl::ParseCommandLine(argc, argv);

  tessera::worker::WorkerNodeOptions options;
  options.scheduler = absl::GetFlag(FLAGS_scheduler);
  options.name = absl::GetFlag(FLAGS_name);
  if (options.name.empty()) options.name = absl::StrCat("worker-", getpid());
  options.rpc_timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout_s));
  options.connect_timeout = absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s));
  options.ps.pull_timeout = absl::Seconds(absl::GetFlag(FLAGS_pull_timeout_s));
  options.ps.streams = absl::GetFlag(FLAGS_streams);
  if (absl::Status st = options.Validate(); !st.ok()) {
    std::fprintf(stderr, "tessera-worker: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  absl::StatusOr<tessera::worker::DeviceSpec> device =
      tessera::worker::ParseDeviceSpec(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    std::fprintf(stderr, "tessera-worker: %s\n", std::string(device.status().message()).c_str());
    return 2;
  }
  // Created before registering, so a worker that cannot have its device
  // never joins the cluster. Used by the task thread (this one) only.
  absl::StatusOr<std::unique_ptr<tessera::worker::ComputeBackend>> backend =
      tessera::worker::CreateBackend(*device);
  if (!backend.ok()) {
    std::fprintf(stderr, "tessera-worker: %s\n", std::string(backend.status().message()).c_str());
    return 2;
  }
  if (absl::Status st = tessera::InitLogging("worker", options.name, absl::GetFlag(FLAGS_log_level));
      !st.ok()) {
    std::fprintf(stderr, "tessera-worker: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  spdlog::info("starting: scheduler={} name={} device={} ({}) rpc_timeout={}s pull_timeout={}s",
               options.scheduler, options.name, device->ToString(), (*backend)->name(),
               absl::GetFlag(FLAGS_rpc_timeout_s), absl::GetFlag(FLAGS_pull_timeout_s));

  tessera::worker::WorkerNode node(options, backend->get());
  if (absl::Status st = node.Start(); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  absl::Notification done;
  std::thread signals([&] {
    const int sig = tessera::WaitForTerminationSignal();
    if (done.HasBeenNotified()) return;
    spdlog::info("signal {}: stopping", sig);
    node.Stop();
    // A task blocked in a long sync pull cannot be interrupted between steps.
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(5))) {
      spdlog::warn("the current task did not stop within 5s; exiting");
      spdlog::default_logger()->flush();
      _exit(0);
    }
  });
  absl::Status st = node.Run();
  done.Notify();
  // Wake the signal thread if Run() ended on its own.
  kill(getpid(), SIGTERM);
  signals.join();
  if (!st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}
