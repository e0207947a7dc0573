#include "common/memory.h"

#include <malloc.h>

namespace tessera {

void KeepLargeAllocations() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // blocks below 256 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 512 << 20);  // and the heap is not trimmed eagerly
}

}  // namespace tessera
