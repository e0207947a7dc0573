#include "tools/local_cluster.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "tools/scheduler_client.h"

namespace tessera::tools {
namespace {

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Died(ChildProcess* child, const std::string& how) {
  return absl::InternalError(absl::StrCat(child->name(), " ", how, "; the end of ",
                                          child->log_path(), ":\n", child->LogTail(15)));
}

}  // namespace

absl::StatusOr<int> LocalCluster::WaitForPortFile(ChildProcess* child, const std::string& path) {
  const absl::Time until = absl::Now() + options_.start_timeout;
  while (absl::Now() < until) {
    if (std::optional<std::string> exit = child->Exited()) {
      return Died(child, absl::StrCat("exited during start-up (", *exit, ")"));
    }
    absl::StatusOr<std::string> text = ReadFile(path);
    int port = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) && port > 0) {
      return port;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return Died(child, absl::StrCat("did not report its port within ",
                                  absl::FormatDuration(options_.start_timeout)));
}

absl::Status LocalCluster::StartScheduler(int port) {
  const std::string port_file = options_.out_dir + "/scheduler.port";
  std::remove(port_file.c_str());
  TESSERA_ASSIGN_OR_RETURN(
      scheduler_,
      ChildProcess::Spawn("tessera-scheduler",
                          {options_.bin_dir + "/tessera-scheduler", absl::StrCat("--port=", port),
                           "--port_file=" + port_file, "--db=" + options_.out_dir + "/scheduler.db",
                           "--log_level=" + options_.log_level,
                           absl::StrCat("--heartbeat_timeout_ms=", options_.heartbeat_timeout_ms)},
                          logs_dir() + "/scheduler.log", /*append=*/port != 0));
  TESSERA_ASSIGN_OR_RETURN(scheduler_port_, WaitForPortFile(scheduler_.get(), port_file));
  scheduler_address_ = absl::StrCat("127.0.0.1:", scheduler_port_);
  return absl::OkStatus();
}

void LocalCluster::KillScheduler(int sig) {
  if (!scheduler_) return;
  scheduler_->Signal(sig);
  scheduler_->Wait(absl::Seconds(10));
  scheduler_.reset();
}

absl::Status LocalCluster::RestartScheduler() {
  KillScheduler(SIGTERM);
  return StartScheduler(scheduler_port_);
}

absl::Status LocalCluster::Start() {
  TESSERA_RETURN_IF_ERROR(MakeDir(options_.out_dir));
  TESSERA_RETURN_IF_ERROR(MakeDir(logs_dir()));
  const std::string& bin = options_.bin_dir;
  const std::string level = absl::StrCat("--log_level=", options_.log_level);
  // A fresh db: a local run starts from nothing.
  const std::string db = options_.out_dir + "/scheduler.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  TESSERA_RETURN_IF_ERROR(StartScheduler(0));
  const std::string sched_flag = "--scheduler=" + scheduler_address_;

  std::vector<std::pair<ChildProcess*, std::string>> port_files;
  for (int i = 0; i < options_.servers; ++i) {
    const std::string name = absl::StrCat("server-", i);
    const std::string port_file = absl::StrCat(options_.out_dir, "/", name, ".port");
    std::remove(port_file.c_str());
    TESSERA_ASSIGN_OR_RETURN(
        std::unique_ptr<ChildProcess> child,
        ChildProcess::Spawn(name,
                            {bin + "/tessera-server", "--port=0", "--port_file=" + port_file,
                             sched_flag, "--name=" + name, level},
                            absl::StrCat(logs_dir(), "/", name, ".log")));
    port_files.emplace_back(child.get(), port_file);
    servers_.push_back(std::move(child));
  }
  for (int i = 0; i < options_.workers; ++i) {
    const std::string name = absl::StrCat("worker-", i);
    TESSERA_ASSIGN_OR_RETURN(
        std::unique_ptr<ChildProcess> child,
        ChildProcess::Spawn(name, {bin + "/tessera-worker", sched_flag, "--name=" + name, level,
                                   "--device=" + options_.worker_device},
                            absl::StrCat(logs_dir(), "/", name, ".log")));
    workers_.push_back(std::move(child));
  }
  for (auto& [child, file] : port_files) {
    TESSERA_RETURN_IF_ERROR(WaitForPortFile(child, file).status());
  }

  // Ready when the scheduler lists every node alive.
  SchedulerClient client(scheduler_address_, absl::Seconds(5));
  const absl::Time until = absl::Now() + options_.start_timeout;
  while (true) {
    TESSERA_RETURN_IF_ERROR(CheckHealth());
    absl::StatusOr<std::vector<NodeInfo>> nodes = client.ListNodes();
    int servers = 0, workers = 0;
    if (nodes.ok()) {
      for (const NodeInfo& n : *nodes) {
        if (!n.alive()) continue;
        servers += n.role() == SERVER;
        workers += n.role() == WORKER;
      }
      if (servers >= options_.servers && workers >= options_.workers) return absl::OkStatus();
    }
    if (absl::Now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat(
          "only ", servers, " of ", options_.servers, " servers and ", workers, " of ",
          options_.workers, " workers registered within ",
          absl::FormatDuration(options_.start_timeout), "; see the logs in ", logs_dir()));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status LocalCluster::CheckHealth() {
  auto check = [](ChildProcess* c) -> absl::Status {
    if (std::optional<std::string> exit = c->Exited()) return Died(c, absl::StrCat("exited (", *exit, ")"));
    return absl::OkStatus();
  };
  if (scheduler_) TESSERA_RETURN_IF_ERROR(check(scheduler_.get()));
  for (auto& s : servers_) TESSERA_RETURN_IF_ERROR(check(s.get()));
  for (auto& w : workers_) TESSERA_RETURN_IF_ERROR(check(w.get()));
  return absl::OkStatus();
}

void LocalCluster::Stop() {
  for (auto* group : {&workers_, &servers_}) {
    for (auto& c : *group) c->Signal(SIGTERM);
    for (auto& c : *group) c->Stop(absl::Seconds(8));
    group->clear();
  }
  if (scheduler_) {
    scheduler_->Stop(absl::Seconds(5));
    scheduler_.reset();
  }
}

}  // namespace tessera::tools
