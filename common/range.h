#ifndef TESSERA_COMMON_RANGE_H_
#define TESSERA_COMMON_RANGE_H_

#include <cstdint>
#include <vector>

namespace tessera {

// A half-open range of element indices [begin, end).
struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
  bool Contains(const Range& other) const {
    return begin <= other.begin && other.end <= end;
  }
  friend bool operator==(const Range& a, const Range& b) {
    return a.begin == b.begin && a.end == b.end;
  }
};

// Splits [0, size) into `parts` contiguous ranges whose sizes differ by at
// most one; earlier parts get the extra elements. REQUIRES: parts > 0.
std::vector<Range> SplitEvenly(uint64_t size, int parts);

// Intersection of two ranges; empty() when they do not overlap.
Range Intersect(const Range& a, const Range& b);

}  // namespace tessera

#endif  // TESSERA_COMMON_RANGE_H_
