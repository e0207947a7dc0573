#ifndef TESSERA_COMMON_STALENESS_H_
#define TESSERA_COMMON_STALENESS_H_

#include <cstdint>

namespace tessera {

// Clocks. Worker w's clock c is its c-th step: it reads the parameters at
// clock c, computes, and pushes the gradient tagged with clock c.
//
// View clock of a read: the largest v such that every live worker's pushes
// for clocks <= v, to every slice read, are included in the values returned
// (-1 when some live worker has pushed nothing yet). Workers push their clocks
// in order, so on a slice it is the minimum over live workers of the latest
// clock each committed there (SYNC: the slice's version - 1).
//
// Observed staleness of a read at clock c with view clock v: the number of
// the reader's preceding clocks c-1, c-2, ... for which some live worker's
// push may be missing, max(0, c - 1 - v). 0 is BSP-fresh; SSP with staleness s
// guarantees <= s (a pull at c waits until v >= c - s - 1); ASYNC bounds nothing.
inline int64_t ObservedStaleness(int64_t clock, int64_t view_clock) {
  return clock - 1 - view_clock > 0 ? clock - 1 - view_clock : 0;
}

// Buckets of staleness histograms: 0 .. kStalenessBuckets - 2, and the last
// one for kStalenessBuckets - 1 or more.
inline constexpr int kStalenessBuckets = 32;

}  // namespace tessera

#endif  // TESSERA_COMMON_STALENESS_H_
