// tessera-scheduler: membership, jobs (SQLite), plans and failure handling.

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/memory.h"
#include "common/signals.h"
#include "scheduler/rpc/scheduler_server.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 7070, "Port to listen on; 0 picks a free one.");
ABSL_FLAG(std::string, port_file, "", "If set, the bound port is written there once listening.");
ABSL_FLAG(std::string, db, "tessera-scheduler.db", "SQLite file keeping the jobs.");
ABSL_FLAG(int, heartbeat_interval_ms, 500, "Heartbeat period told to nodes.");
ABSL_FLAG(int, heartbeat_timeout_ms, 5000, "A node silent this long is dead.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");

int main(int argc, char** argv) {
  tessera::BlockTerminationSignals();
  tessera::KeepLargeAllocations();
  absl::SetProgramUsageMessage(
      "Tessera scheduler: registers nodes, keeps jobs in SQLite, plans and runs them.\n"
      "Usage: tessera-scheduler [--port=7070] [--db=tessera-scheduler.db]");
  absl::ParseCommandLine(argc, argv);
  const std::string host = absl::GetFlag(FLAGS_host);
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "tessera-scheduler: --port=%d: expected 0..65535\n", port);
    return 2;
  }
  tessera::scheduler::SchedulerOptions options;
  options.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms));
  options.heartbeat_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_timeout_ms));
  if (absl::Status st = options.Validate(); !st.ok()) {
    std::fprintf(stderr, "tessera-scheduler: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (absl::Status st = tessera::InitLogging("scheduler", absl::StrCat(host, ":", port),
                                             absl::GetFlag(FLAGS_log_level));
      !st.ok()) {
    std::fprintf(stderr, "tessera-scheduler: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  spdlog::info("starting: host={} port={} db={} heartbeat interval={}ms timeout={}ms", host, port,
               absl::GetFlag(FLAGS_db), absl::GetFlag(FLAGS_heartbeat_interval_ms),
               absl::GetFlag(FLAGS_heartbeat_timeout_ms));
  tessera::scheduler::SchedulerServer server(options, absl::GetFlag(FLAGS_db));
  if (absl::Status st = server.Start(host, port); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  spdlog::info("listening on {}:{}", host, server.port());
  if (const std::string file = absl::GetFlag(FLAGS_port_file); !file.empty()) {
    if (absl::Status st = tessera::WriteFileAtomically(file, absl::StrCat(server.port(), "\n"));
        !st.ok()) {
      spdlog::error("{}", std::string(st.message()));
      return 1;
    }
  }
  const int sig = tessera::WaitForTerminationSignal();
  spdlog::info("signal {}: stopping", sig);
  server.Stop();
  spdlog::info("stopped");
  return 0;
}
