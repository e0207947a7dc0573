// fp32 <-> fp16 / bf16 conversions (kernels/convert.h): exhaustive round trips
// of every 16-bit pattern, rounding (ties to even, subnormals, overflow) on
// chosen values, and the error bound on random inputs.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/convert.h"
#include "kernels/test_reference.h"

namespace tessera::kernels {
namespace {

// The nearest of the representable 16-bit values to x (ties to the even bit
// pattern), by brute force over all finite patterns: the specification.
uint16_t NearestBySearch(float x, float (*widen)(uint16_t)) {
  uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (uint32_t p = 0; p < 65536; ++p) {
    const float v = widen(static_cast<uint16_t>(p));
    if (!std::isfinite(v)) continue;
    if (std::signbit(v) != std::signbit(x)) continue;
    const double err = std::fabs(double(v) - double(x));
    if (err < best_err || (err == best_err && (p & 1) == 0)) {
      best = static_cast<uint16_t>(p);
      best_err = err;
    }
  }
  return best;
}

float Widen16(uint16_t h) { return HalfBitsToFloat(h); }
float WidenBf(uint16_t b) { return Bf16BitsToFloat(b); }

TEST(ConvertTest, EveryHalfPatternRoundTrips) {
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint16_t h = static_cast<uint16_t>(p);
    const float f = HalfBitsToFloat(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(f)))) << std::hex << p;
      continue;
    }
    EXPECT_EQ(FloatToHalfBits(f), h) << std::hex << p;
  }
}

TEST(ConvertTest, EveryBf16PatternRoundTrips) {
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint16_t b = static_cast<uint16_t>(p);
    const float f = Bf16BitsToFloat(b);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(f)))) << std::hex << p;
      continue;
    }
    EXPECT_EQ(FloatToBf16Bits(f), b) << std::hex << p;
  }
}

TEST(ConvertTest, HalfKnownValues) {
  EXPECT_EQ(FloatToHalfBits(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalfBits(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalfBits(65519.0f), 0x7BFF);  // rounds down
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7C00);  // tie at the top rounds to Inf
  EXPECT_EQ(FloatToHalfBits(1e10f), 0x7C00);
  EXPECT_EQ(FloatToHalfBits(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(FloatToHalfBits(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -25)), 0x0000);  // tie: to even (zero)
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even 2
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(FloatToHalfBits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(FloatToHalfBits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(std::nanf("")))));
  EXPECT_EQ(FloatToHalfBits(-std::numeric_limits<float>::quiet_NaN()) & 0x8000, 0x8000);
}

TEST(ConvertTest, Bf16KnownValues) {
  EXPECT_EQ(FloatToBf16Bits(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16Bits(-0.0f), 0x8000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even.
  EXPECT_EQ(FloatToBf16Bits(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(FloatToBf16Bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(FloatToBf16Bits(std::numeric_limits<float>::max()), 0x7F80);  // rounds to Inf
  EXPECT_EQ(FloatToBf16Bits(std::numeric_limits<float>::infinity()), 0x7F80);
  const uint16_t nan = FloatToBf16Bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(nan)));
  // A signalling NaN whose payload is only in the low bits must stay NaN.
  uint32_t snan_bits = 0x7F800001u;
  float snan;
  std::memcpy(&snan, &snan_bits, sizeof snan);
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(snan))));
  EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(snan))));
}

TEST(ConvertTest, RandomValuesRoundToTheNearest) {
  // Values across the fp16 range, subnormals included.
  std::mt19937_64 rng(77);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-26, 15);  // below 65520: no overflow
  for (int i = 0; i < 400; ++i) {
    const float x = std::ldexp(mant(rng), exp(rng));
    ASSERT_EQ(FloatToHalfBits(x), NearestBySearch(x, Widen16)) << x;
    ASSERT_EQ(FloatToBf16Bits(x), NearestBySearch(x, WidenBf)) << x;
  }
}

TEST(ConvertTest, ArraysAndErrorBounds) {
  for (int64_t n : {1, 3, 4, 1001}) {
    const std::vector<float> x = testing::RandomVector(n, 900 + n, -100.0f, 100.0f);
    std::vector<uint16_t> h(n, 0xFFFF), b(n, 0xFFFF);
    std::vector<float> hx(n, testing::kNaN), bx(n, testing::kNaN);
    FloatToHalf(x.data(), n, h.data());
    HalfToFloat(h.data(), n, hx.data());
    FloatToBf16(x.data(), n, b.data());
    Bf16ToFloat(b.data(), n, bx.data());
    const std::vector<double> ref(x.begin(), x.end());
    // Half: 11 significant bits (2^-11 relative); bf16: 8 bits (2^-8).
    EXPECT_LT(testing::RelativeError(hx, ref), 4.9e-4) << "n=" << n;
    EXPECT_LT(testing::RelativeError(bx, ref), 3.9e-3) << "n=" << n;
    EXPECT_GT(testing::RelativeError(bx, ref), 0.0) << "bf16 should lose bits on random input";
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(h[i], FloatToHalfBits(x[i]));
      EXPECT_EQ(b[i], FloatToBf16Bits(x[i]));
    }
  }
}

}  // namespace
}  // namespace tessera::kernels
