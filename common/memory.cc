#include "common/memory.h"

#include <malloc.h>

#include "absl/synchronization/mutex.h"

namespace tessera {

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
