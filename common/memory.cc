#include "common/memory.h"

#include <malloc.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdint>
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

void StreamingCopy(void* dst, const void* src, size_t n) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
#if defined(__SSE2__)
  // Plain stores up to dst's first 16-byte boundary, streaming ones for the
  // whole 64-byte blocks after it, plain ones for the rest.
  const size_t head = std::min(n, (16 - reinterpret_cast<uintptr_t>(d) % 16) % 16);
  std::memcpy(d, s, head);
  d += head;
  s += head;
  n -= head;
  const size_t blocks = n / 64 * 64;
  for (size_t i = 0; i < blocks; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  // Streaming stores are weakly ordered: fence them before anything that
  // could tell another thread the bytes are there.
  _mm_sfence();
  d += blocks;
  s += blocks;
  n -= blocks;
#endif
  std::memcpy(d, s, n);
}

}  // namespace tessera
