#include "tests/test_cluster.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tessera::testing {

std::string BinDir() {
  if (const char* dir = std::getenv("TESSERA_BIN_DIR")) return dir;
#ifdef TESSERA_DEFAULT_BIN_DIR
  return TESSERA_DEFAULT_BIN_DIR;
#else
  return ".";
#endif
}

std::string FashionMnistDir() { return "/usr/share/datasets/fashion-mnist"; }

TestDir::TestDir() : dir_(ScopedTempDir::Create("tessera-test").value()) {}

TestDir::~TestDir() {
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  const ::testing::TestInfo* test = unit.current_test_info();
  const ::testing::TestSuite* suite = unit.current_test_suite();
  const bool failed = test != nullptr    ? test->result()->Failed()
                      : suite != nullptr ? suite->Failed()
                                         : false;
  if (failed) {
    dir_.Keep();
    std::fprintf(stderr, "kept %s for its logs\n", dir_.path().c_str());
  }
}

CliResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                     absl::Duration timeout) {
  int fds[2];
  CliResult result;
  if (pipe(fds) != 0) return result;
  std::string bin = BinDir() + "/" + program;
  std::vector<char*> argv = {bin.data()};
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  const absl::Time until = absl::Now() + timeout;
  char buf[4096];
  while (true) {
    pollfd p{fds[0], POLLIN, 0};
    const int left = static_cast<int>(absl::ToInt64Milliseconds(until - absl::Now()));
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(&p, 1, left) <= 0) continue;
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    result.output.append(buf, n);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace tessera::testing

namespace tessera::testing {

SilentListener::SilentListener() {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(fd_, 16);
  socklen_t len = sizeof(addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
}

SilentListener::~SilentListener() { close(fd_); }

}  // namespace tessera::testing
