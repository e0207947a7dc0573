#include "common/range.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(RangeTest, SplitEvenlyCoversEverythingContiguously) {
  for (uint64_t size : {0ull, 1ull, 7ull, 100ull, 101ull}) {
    for (int parts : {1, 2, 3, 8}) {
      auto ranges = SplitEvenly(size, parts);
      ASSERT_EQ(ranges.size(), static_cast<size_t>(parts));
      uint64_t next = 0;
      for (const Range& r : ranges) {
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), size / parts + 1);
        EXPECT_GE(r.size(), size / parts);
        next = r.end;
      }
      EXPECT_EQ(next, size);
    }
  }
}

TEST(RangeTest, Intersect) {
  EXPECT_EQ(Intersect({0, 10}, {5, 20}), (Range{5, 10}));
  EXPECT_TRUE(Intersect({0, 5}, {5, 20}).empty());
  EXPECT_TRUE(Intersect({10, 20}, {0, 3}).empty());
  EXPECT_TRUE((Range{0, 10}).Contains({2, 10}));
  EXPECT_FALSE((Range{0, 10}).Contains({2, 11}));
}

}  // namespace
}  // namespace tessera
