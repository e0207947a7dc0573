#include "common/memory.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

// Every alignment of both ends against the 16-byte stores, around the sizes
// where the head, the 64-byte blocks and the tail meet.
TEST(StreamingCopyTest, CopiesExactlyTheBytesAtAnyAlignment) {
  std::vector<uint8_t> src(4096 + 64);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 131 + 7);
  for (size_t n : {0, 1, 15, 16, 17, 63, 64, 65, 79, 80, 81, 127, 128, 129, 1000, 4096}) {
    for (size_t from = 0; from < 17; ++from) {
      for (size_t to = 0; to < 17; ++to) {
        std::vector<uint8_t> dst(n + 48, 0xEE);
        StreamingCopy(dst.data() + to, src.data() + from, n);
        for (size_t i = 0; i < dst.size(); ++i) {
          const bool inside = i >= to && i < to + n;
          ASSERT_EQ(dst[i], inside ? src[from + i - to] : 0xEE)
              << "n " << n << " from " << from << " to " << to << " byte " << i;
        }
      }
    }
  }
}

TEST(StreamingCopyTest, CopiesAMultiMegabyteBuffer) {
  std::vector<float> src((size_t{3} << 20) / sizeof(float) + 5);  // 3 MiB and 20 bytes
  for (size_t i = 0; i < src.size(); ++i) src[i] = 0.25f * static_cast<float>(i) - 1.0f;
  std::vector<float> dst(src.size(), -7.0f);
  StreamingCopy(dst.data(), src.data(), src.size() * sizeof(float));
  EXPECT_EQ(dst, src);
}

}  // namespace
}  // namespace tessera
