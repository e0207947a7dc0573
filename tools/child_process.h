#ifndef TESSERA_TOOLS_CHILD_PROCESS_H_
#define TESSERA_TOOLS_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tessera::tools {

// A child process whose stdout and stderr go to a log file. The child gets
// SIGTERM if this process dies first. Destruction stops it (SIGTERM, then
// SIGKILL). Used by one thread.
class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv. `name` is used in messages. The log
  // is truncated unless `append`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::string& name,
                                                             const std::vector<std::string>& argv,
                                                             const std::string& log_path,
                                                             bool append = false);
  ~ChildProcess();

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // Reaps the child if it has exited; returns its exit description
  // ("exit code 1", "killed by signal 9") or nullopt while it runs.
  std::optional<std::string> Exited();
  // Sends `sig` if the child still runs.
  void Signal(int sig);
  // Waits up to `timeout` for the child to exit; true once it has.
  bool Wait(absl::Duration timeout);
  // SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit description.
  std::string Stop(absl::Duration grace);
  // The last `lines` lines of the log.
  std::string LogTail(int lines) const;

 private:
  ChildProcess(std::string name, pid_t pid, std::string log_path)
      : name_(std::move(name)), pid_(pid), log_path_(std::move(log_path)) {}

  const std::string name_;
  const pid_t pid_;
  const std::string log_path_;
  std::optional<std::string> exit_;
};

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_CHILD_PROCESS_H_
