#include "kernels/compress.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/convert.h"

namespace tessera::kernels {
namespace {

std::vector<float> Random(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// Encodes, checks `sent` is what the decoder rebuilds, returns the decoded values.
std::vector<float> RoundTrip(Codec codec, const std::vector<float>& x, int64_t k) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<char> payload(PayloadBytes(codec, n, k));
  std::vector<float> sent(n, NAN), decoded(n, NAN);
  const float scale = PayloadScale(codec, x.data(), n);
  EncodePayload(codec, x.data(), n, k, scale, payload.data(), sent.data());
  EXPECT_TRUE(DecodePayload(codec, payload.data(), payload.size(), n, scale, decoded.data()));
  EXPECT_EQ(sent, decoded);
  return decoded;
}

TEST(CompressTest, SixteenBitCodecsHalveTheBytesAndKeepTheirPrecision) {
  for (int64_t n : {1, 7, 1000, 65537}) {
    const std::vector<float> x = Random(n, n);
    EXPECT_EQ(PayloadBytes(Codec::kFp16, n, 0), 2 * static_cast<size_t>(n));
    for (auto [codec, tol] : {std::pair{Codec::kFp16, 1e-3}, std::pair{Codec::kBf16, 8e-3}}) {
      const std::vector<float> y = RoundTrip(codec, x, 0);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(y[i], x[i], tol * std::fabs(x[i]) + 1e-7) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(CompressTest, Fp16ScalesSmallGradientsOutOfTheSubnormals) {
  // Gradients around 1e-6 are subnormal in plain half (below 6.1e-5): 2-3
  // significant bits. The per-chunk power-of-two scale keeps all 11.
  std::vector<float> x = Random(1000, 5);
  for (float& v : x) v *= 1e-6f;
  const float scale = PayloadScale(Codec::kFp16, x.data(), 1000);
  EXPECT_GT(scale, 1e9f);
  const std::vector<float> y = RoundTrip(Codec::kFp16, x, 0);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-3 * std::fabs(x[i])) << i;
  // Large values scale down instead of overflowing to Inf.
  std::vector<float> big = {1e6f, -3e5f, 7.0f};
  const std::vector<float> z = RoundTrip(Codec::kFp16, big, 0);
  for (size_t i = 0; i < big.size(); ++i) ASSERT_NEAR(z[i], big[i], 1e-3 * std::fabs(big[i]));
  // Zeros, Inf and NaN: scale 1 for all-zero, non-finite values pass through.
  std::vector<float> odd = {0.0f, INFINITY, 2.0f};
  EXPECT_GT(PayloadScale(Codec::kFp16, odd.data(), 3), 1.0f);
  std::vector<float> zeros(4, 0.0f);
  EXPECT_EQ(PayloadScale(Codec::kFp16, zeros.data(), 4), 1.0f);
  const char bytes[4] = {};
  float out[2];
  EXPECT_FALSE(DecodePayload(Codec::kFp16, bytes, 4, 2, 3.0f, out));   // not a power of two
  EXPECT_FALSE(DecodePayload(Codec::kFp16, bytes, 4, 2, -2.0f, out));  // negative
  EXPECT_TRUE(DecodePayload(Codec::kFp16, bytes, 4, 2, 0.0f, out));    // unscaled
}

TEST(CompressTest, Fp16PayloadIsTheScalarConversionBitForBit) {
  // Whatever path EncodePayload takes (F16C or scalar), its bytes are those
  // of FloatToHalfBits(x * scale), specials and halfway cases included.
  std::vector<float> x = Random(1001, 21);
  x[3] = INFINITY;
  x[4] = -0.0f;
  x[5] = NAN;
  x[6] = 1.0f + 1.0f / 2048;  // halfway between two halves: ties to even
  x[7] = 3e-9f;               // far below the rest: a half subnormal even after scaling
  const float scale = PayloadScale(Codec::kFp16, x.data(), 1001);
  std::vector<char> payload(PayloadBytes(Codec::kFp16, 1001, 0));
  EncodePayload(Codec::kFp16, x.data(), 1001, 0, scale, payload.data(), nullptr);
  std::vector<float> back(1001);
  ASSERT_TRUE(DecodePayload(Codec::kFp16, payload.data(), payload.size(), 1001, scale,
                            back.data()));
  for (int i = 0; i < 1001; ++i) {
    uint16_t h;
    std::memcpy(&h, payload.data() + 2 * i, 2);
    const uint16_t want = FloatToHalfBits(x[i] * scale);
    if (std::isnan(x[i])) {
      ASSERT_TRUE(std::isnan(back[i]));
      ASSERT_EQ(h & 0x7C00, 0x7C00);
      continue;
    }
    ASSERT_EQ(h, want) << i;
    ASSERT_EQ(back[i], HalfBitsToFloat(want) / scale) << i;
  }
}

TEST(CompressTest, TopKKeepsExactlyTheLargestMagnitudes) {
  const int64_t n = 10000;
  std::vector<float> x = Random(n, 3);
  const int64_t k = TopKCount(n, 0.01);
  ASSERT_EQ(k, 100);
  EXPECT_EQ(PayloadBytes(Codec::kTopK, n, k), 800u);
  const std::vector<float> y = RoundTrip(Codec::kTopK, x, k);
  std::vector<float> mags;
  for (float v : x) mags.push_back(std::fabs(v));
  std::sort(mags.begin(), mags.end());
  const float threshold = mags[n - k];
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] != 0) {
      ++kept;
      EXPECT_EQ(y[i], x[i]);
      EXPECT_GE(std::fabs(x[i]), threshold);
    } else {
      EXPECT_LE(std::fabs(x[i]), threshold);
    }
  }
  EXPECT_EQ(kept, k);
  // Ties at the threshold: exactly k kept even when all are equal.
  const std::vector<float> flat(50, 2.0f);
  const std::vector<float> z = RoundTrip(Codec::kTopK, flat, 5);
  EXPECT_EQ(std::count(z.begin(), z.end(), 2.0f), 5);
  EXPECT_EQ(TopKCount(3, 0.01), 1);
  EXPECT_EQ(TopKCount(3, 1.0), 3);
}

TEST(CompressTest, OneBitSendsSignsTimesTheMeanMagnitude) {
  for (int64_t n : {1, 9, 4096}) {
    const std::vector<float> x = Random(n, 7 + n);
    double mean = 0;
    for (float v : x) mean += std::fabs(v);
    mean /= n;
    EXPECT_EQ(PayloadBytes(Codec::kOneBit, n, 0), static_cast<size_t>((n + 7) / 8));
    const std::vector<float> y = RoundTrip(Codec::kOneBit, x, 0);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(std::fabs(y[i]), mean, 1e-5 * mean);
      ASSERT_EQ(y[i] >= 0, x[i] >= 0);
    }
  }
}

TEST(CompressTest, ErrorFeedbackDeliversEverythingEventually) {
  // Top-k with the residual carried over: over many steps the sum of what was
  // sent approaches the sum of the gradients (what error feedback is for).
  const int64_t n = 1000, k = 10, steps = 400;
  std::vector<float> residual(n, 0.0f), total(n, 0.0f), delivered(n, 0.0f);
  std::vector<char> payload(PayloadBytes(Codec::kTopK, n, k));
  std::vector<float> acc(n), sent(n);
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<float> g = Random(n, 100 + s);
    for (int64_t i = 0; i < n; ++i) {
      total[i] += g[i];
      acc[i] = g[i] + residual[i];
    }
    EncodePayload(Codec::kTopK, acc.data(), n, k, 0, payload.data(), sent.data());
    for (int64_t i = 0; i < n; ++i) {
      residual[i] = acc[i] - sent[i];
      delivered[i] += sent[i];
    }
  }
  double err = 0, norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    err += (total[i] - delivered[i]) * (total[i] - delivered[i]);
    norm += total[i] * total[i];
  }
  // Without feedback only ~k/n of the mass would arrive; with it the gap is
  // just the last residual.
  EXPECT_LT(std::sqrt(err / norm), 0.5);
}

TEST(CompressTest, DecodeRejectsPayloadsThatCannotBe) {
  std::vector<float> out(8);
  const char bytes[16] = {};
  EXPECT_FALSE(DecodePayload(Codec::kNone, bytes, 12, 8, 0, out.data()));
  EXPECT_FALSE(DecodePayload(Codec::kFp16, bytes, 15, 8, 0, out.data()));
  EXPECT_FALSE(DecodePayload(Codec::kTopK, bytes, 12, 8, 0, out.data()));  // half a pair
  EXPECT_FALSE(DecodePayload(Codec::kOneBit, bytes, 2, 8, 1, out.data()));
  EXPECT_FALSE(DecodePayload(Codec::kOneBit, bytes, 1, 8, NAN, out.data()));
  // A top-k index past n.
  char pair[8] = {};
  const uint32_t index = 8;
  std::memcpy(pair, &index, 4);
  EXPECT_FALSE(DecodePayload(Codec::kTopK, pair, 8, 8, 0, out.data()));
  EXPECT_TRUE(DecodePayload(Codec::kTopK, pair, 8, 9, 0, out.data()));
}

}  // namespace
}  // namespace tessera::kernels
