#include "common/memory.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/synchronization/mutex.h"

namespace tessera {

namespace {
constexpr char kTunable[] = "glibc.malloc.hugetlb";
constexpr char kTunableOn[] = "glibc.malloc.hugetlb=1";
}  // namespace

bool HugePageMallocEnabled() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, kTunableOn) != nullptr;
}

void RestartWithHugePageMalloc(char** argv) {
  const char* opt_out = std::getenv("TESSERA_HUGE_PAGES");
  if (opt_out != nullptr && std::strcmp(opt_out, "0") == 0) return;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const std::string current = tunables == nullptr ? "" : tunables;
  if (current.find(kTunable) != std::string::npos) return;  // set: by us or by the user
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::stringstream mode;
  mode << thp.rdbuf();
  if (!thp || mode.str().find("[never]") != std::string::npos) return;
  const std::string value = current.empty() ? kTunableOn : current + ":" + kTunableOn;
  if (setenv("GLIBC_TUNABLES", value.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  // Still here: run on as we are, without leaving the tunable to children.
  if (tunables == nullptr) {
    unsetenv("GLIBC_TUNABLES");
  } else {
    setenv("GLIBC_TUNABLES", current.c_str(), 1);
  }
}

void KeepLargeAllocations() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // blocks below 256 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 512 << 20);  // and the heap is not trimmed eagerly
  // One arena. A per-thread arena grows in 64 MiB heaps and unmaps a heap
  // whenever it empties, whatever the trim threshold: gRPC's receive buffers
  // then page-fault in on every large message.
  mallopt(M_ARENA_MAX, 1);
}

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace tessera
