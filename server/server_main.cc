// tessera-server: holds slices of the models of running jobs, applies the
// optimizers and serves pushes and pulls (ParameterService). Registers with
// the scheduler and heartbeats; SIGTERM/SIGINT shut it down gracefully.

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/memory.h"
#include "common/signals.h"
#include "server/rpc/parameter_server.h"
#include "server/rpc/scheduler_link.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on");
ABSL_FLAG(int, port, 0, "port to listen on; 0 picks a free one");
ABSL_FLAG(std::string, port_file, "",
          "if set, the bound port is written here (atomically) once listening");
ABSL_FLAG(std::string, advertise_host, "",
          "host the scheduler and workers dial; default --host");
ABSL_FLAG(std::string, scheduler, "", "scheduler address host:port (required)");
ABSL_FLAG(std::string, name, "", "stable node name; default server-<port>");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");
ABSL_FLAG(int, max_pull_wait_s, 120, "longest a pull waits for fresh parameters, seconds");
ABSL_FLAG(int, register_timeout_s, 30,
          "give up (exit 1) if the scheduler cannot be reached for this long at start");

namespace tessera::server {
namespace {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string port_file;
  std::string advertise_host;  // empty: host
  std::string scheduler;
  std::string name;  // empty: server-<port>
  std::string log_level = "info";
  int max_pull_wait_s = 120;
  int register_timeout_s = 30;

  absl::Status Validate() const {
    if (host.empty()) return absl::InvalidArgumentError("--host must not be empty");
    if (port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--port must be in 0..65535, got ", port));
    }
    if (scheduler.empty()) {
      return absl::InvalidArgumentError("--scheduler is required (host:port of tessera-scheduler)");
    }
    const size_t colon = scheduler.rfind(':');
    int scheduler_port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(scheduler.substr(colon + 1), &scheduler_port) || scheduler_port <= 0 ||
        scheduler_port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--scheduler must be host:port, got '", scheduler, "'"));
    }
    if (max_pull_wait_s < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max_pull_wait_s must be >= 1, got ", max_pull_wait_s));
    }
    if (register_timeout_s < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--register_timeout_s must be >= 1, got ", register_timeout_s));
    }
    return absl::OkStatus();
  }
};

ServerOptions OptionsFromFlags() {
  ServerOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.advertise_host = absl::GetFlag(FLAGS_advertise_host);
  o.scheduler = absl::GetFlag(FLAGS_scheduler);
  o.name = absl::GetFlag(FLAGS_name);
  o.log_level = absl::GetFlag(FLAGS_log_level);
  o.max_pull_wait_s = absl::GetFlag(FLAGS_max_pull_wait_s);
  o.register_timeout_s = absl::GetFlag(FLAGS_register_timeout_s);
  return o;
}

// Why the process stops: a signal (exit 0) or a fatal error (exit 1).
// Thread-safe; the first request wins.
class StopRequest {
 public:
  void Request(int exit_code, std::string reason) {
    absl::MutexLock lock(&mu_);
    if (requested_) return;
    requested_ = true;
    exit_code_ = exit_code;
    reason_ = std::move(reason);
  }
  // Blocks until Request(); returns the exit code and reason.
  std::pair<int, std::string> Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&requested_));
    return {exit_code_, reason_};
  }

 private:
  absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  int exit_code_ ABSL_GUARDED_BY(mu_) = 0;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

int Run(const ServerOptions& opts) {
  ParameterServer::Options ps_options;
  ps_options.service.max_pull_wait = absl::Seconds(opts.max_pull_wait_s);
  ParameterServer server(ps_options);
  absl::Status s = server.Start(opts.host, opts.port);
  if (!s.ok()) {
    std::fprintf(stderr, "tessera-server: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string name = opts.name.empty() ? absl::StrCat("server-", server.port()) : opts.name;
  s = InitLogging("server", name, opts.log_level);
  if (!s.ok()) {
    std::fprintf(stderr, "tessera-server: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string advertise = JoinHostPort(
      opts.advertise_host.empty() ? opts.host : opts.advertise_host, server.port());
  spdlog::info(
      "tessera-server '{}' listening on {} (advertised {}); scheduler {}, max_pull_wait {}s, "
      "register_timeout {}s, log_level {}, port_file '{}', malloc on {}",
      name, JoinHostPort(opts.host, server.port()), advertise, opts.scheduler,
      opts.max_pull_wait_s, opts.register_timeout_s, opts.log_level, opts.port_file,
      HugePageMallocEnabled() ? "huge pages" : "4 KiB pages");
  if (!opts.port_file.empty()) {
    s = WriteFileAtomically(opts.port_file, absl::StrCat(server.port(), "\n"));
    if (!s.ok()) {
      spdlog::error("cannot write --port_file: {}", s.ToString());
      server.Stop();
      return 1;
    }
  }

  StopRequest stop;
  // SIGINT/SIGTERM are blocked in every thread (main() blocks them first);
  // this one takes them with sigwait, so no code runs in signal context.
  std::thread signals([&stop] {
    const int sig = WaitForTerminationSignal();
    stop.Request(0, absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
  });
  SchedulerLink::Options link_options;
  link_options.scheduler_address = opts.scheduler;
  link_options.name = name;
  link_options.address = advertise;
  link_options.register_deadline = absl::Seconds(opts.register_timeout_s);
  SchedulerLink link(link_options);
  link.Start([&stop](const absl::Status& fatal) { stop.Request(1, std::string(fatal.message())); });

  const auto [exit_code, reason] = stop.Wait();
  if (exit_code == 0) {
    spdlog::info("{}: shutting down", reason);
  } else {
    spdlog::error("{}", reason);
  }
  link.Stop();
  server.Stop();
  // A fatal error stopped us: wake the signal thread (its request loses to ours).
  if (exit_code != 0) pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  spdlog::info("stopped");
  spdlog::shutdown();
  return exit_code;
}

}  // namespace
}  // namespace tessera::server

int main(int argc, char** argv) {
  tessera::RestartWithHugePageMalloc(argv);
  // Before any thread exists, so every thread inherits the mask.
  tessera::BlockTerminationSignals();
  tessera::KeepLargeAllocations();
  tessera::DisableMutexDeadlockDetection();
  absl::SetProgramUsageMessage(
      "tessera-server --scheduler=HOST:PORT [--host=127.0.0.1] [--port=0] [--port_file=FILE]");
  absl::ParseCommandLine(argc, argv);
  const tessera::server::ServerOptions opts = tessera::server::OptionsFromFlags();
  absl::Status s = opts.Validate();
  if (!s.ok()) {
    std::fprintf(stderr, "tessera-server: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return tessera::server::Run(opts);
}
