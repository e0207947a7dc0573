#include "common/range.h"

#include <algorithm>

namespace tessera {

std::vector<Range> SplitEvenly(uint64_t size, int parts) {
  std::vector<Range> out;
  out.reserve(parts);
  const uint64_t base = size / parts;
  const uint64_t extra = size % parts;
  uint64_t begin = 0;
  for (int i = 0; i < parts; ++i) {
    const uint64_t len = base + (static_cast<uint64_t>(i) < extra ? 1 : 0);
    out.push_back(Range{begin, begin + len});
    begin += len;
  }
  return out;
}

Range Intersect(const Range& a, const Range& b) {
  Range r{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

}  // namespace tessera
