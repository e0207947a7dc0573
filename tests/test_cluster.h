#ifndef TESSERA_TESTS_TEST_CLUSTER_H_
#define TESSERA_TESTS_TEST_CLUSTER_H_

// Helpers for tests that run the real binaries on 127.0.0.1.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/file_util.h"

namespace tessera::testing {

// Folder holding tessera, tessera-scheduler, tessera-server, tessera-worker:
// $TESSERA_BIN_DIR, else the build's bin folder.
std::string BinDir();

// The Fashion-MNIST folder installed by the dataset-fashion-mnist package.
std::string FashionMnistDir();

// A new empty folder for one test's files (inputs, cluster logs) under
// $TEST_TMPDIR or /tmp. Removed when this goes, unless the running test (or,
// outside a test, its suite) has failed: then it is kept for the logs, and
// its path printed.
class TestDir {
 public:
  TestDir();
  ~TestDir();
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::string& path() const { return dir_.path(); }

 private:
  ScopedTempDir dir_;
};

struct CliResult {
  int exit_code = -1;  // -1: killed at the timeout
  std::string output;  // stdout and stderr together
};

// Runs `BinDir()/program args...`, killing it after `timeout`.
CliResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                     absl::Duration timeout = absl::Seconds(60));

// Runs `BinDir()/tessera args...`.
inline CliResult RunTessera(const std::vector<std::string>& args,
                            absl::Duration timeout = absl::Seconds(60)) {
  return RunProgram("tessera", args, timeout);
}

// A socket on 127.0.0.1 that accepts connections and never answers: a peer
// that hangs. Closed on destruction.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A TCP port on 127.0.0.1 that nobody listens on right now.
int UnusedPort();

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_TEST_CLUSTER_H_
