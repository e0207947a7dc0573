// tessera-scheduler: membership, jobs (SQLite), plans and failure handling.

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/signals.h"
#include "scheduler/rpc/scheduler_server.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 7070, "Port to listen on; 0 picks a free one (see --port_file).");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written there (atomically) once listening.");
ABSL_FLAG(std::string, db, "tessera-scheduler.db", "SQLite file keeping the jobs.");
ABSL_FLAG(int, heartbeat_interval_ms, 500, "Heartbeat period told to nodes.");
ABSL_FLAG(int, heartbeat_timeout_ms, 5000, "A node silent this long is dead.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

namespace tessera::scheduler {
namespace {

// Everything main() reads from its flags.
struct MainOptions {
  std::string host = "127.0.0.1";
  int port = 7070;  // 0: any free port
  std::string port_file;
  std::string db = "tessera-scheduler.db";
  std::string log_level = "info";
  SchedulerOptions scheduler;

  absl::Status Validate() const {
    if (host.empty()) return absl::InvalidArgumentError("--host must not be empty");
    if (port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("--port=", port, ": expected 0..65535"));
    }
    if (db.empty()) return absl::InvalidArgumentError("--db must not be empty");
    absl::Status st = scheduler.Validate();
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--heartbeat_interval_ms/--heartbeat_timeout_ms: ", st.message()));
    }
    return absl::OkStatus();
  }
};

MainOptions FromFlags() {
  MainOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.db = absl::GetFlag(FLAGS_db);
  o.log_level = absl::GetFlag(FLAGS_log_level);
  o.scheduler.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms));
  o.scheduler.heartbeat_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_timeout_ms));
  // Detection latency is timeout + tick; keep the tick well below the interval.
  o.scheduler.tick_interval = o.scheduler.heartbeat_interval / 2;
  return o;
}

int Run(const MainOptions& o) {
  spdlog::info(
      "starting: host={} port={} port_file={} db={} heartbeat_interval={} "
      "heartbeat_timeout={} log_level={}",
      o.host, o.port, o.port_file.empty() ? "(none)" : o.port_file, o.db,
      absl::FormatDuration(o.scheduler.heartbeat_interval),
      absl::FormatDuration(o.scheduler.heartbeat_timeout), o.log_level);
  SchedulerServer server(o.scheduler, o.db);
  if (absl::Status st = server.Start(o.host, o.port); !st.ok()) {
    spdlog::error("cannot start: {}", std::string(st.message()));
    return 1;
  }
  spdlog::info("listening on {}:{}", o.host, server.port());
  if (!o.port_file.empty()) {
    if (absl::Status st = WriteFileAtomically(o.port_file, absl::StrCat(server.port(), "\n"));
        !st.ok()) {
      spdlog::error("cannot write --port_file: {}", std::string(st.message()));
      return 1;
    }
  }
  const int sig = WaitForTerminationSignal();
  spdlog::info("signal {}: stopping", sig);
  server.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace tessera::scheduler

int main(int argc, char** argv) {
  // Before any thread starts, so that only WaitForTerminationSignal sees them.
  tessera::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "Tessera scheduler: registers nodes, keeps jobs in SQLite, plans and runs them.\n"
      "Usage: tessera-scheduler [--port=7070] [--db=tessera-scheduler.db]");
  absl::ParseCommandLine(argc, argv);
  const tessera::scheduler::MainOptions options = tessera::scheduler::FromFlags();
  if (absl::Status st = options.Validate(); !st.ok()) {
    std::fprintf(stderr, "tessera-scheduler: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (absl::Status st = tessera::InitLogging(
          "scheduler", absl::StrCat(options.host, ":", options.port), options.log_level);
      !st.ok()) {
    std::fprintf(stderr, "tessera-scheduler: --log_level: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  return tessera::scheduler::Run(options);
}
