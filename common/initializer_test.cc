#include "common/initializer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

TensorSpec Spec(TensorSpec::Init init, uint64_t size, float scale) {
  TensorSpec s;
  s.set_name("layer0/w");
  s.set_size(size);
  s.set_init(init);
  s.set_scale(scale);
  return s;
}

TEST(InitializerTest, SlicesEqualTheWholeTensor) {
  for (auto init : {TensorSpec::UNIFORM, TensorSpec::NORMAL}) {
    TensorSpec spec = Spec(init, 1001, 0.5f);
    std::vector<float> whole(1001);
    InitializeSlice(spec, 7, {0, 1001}, absl::MakeSpan(whole));
    std::vector<float> part(400);
    InitializeSlice(spec, 7, {300, 700}, absl::MakeSpan(part));
    for (int i = 0; i < 400; ++i) EXPECT_EQ(part[i], whole[300 + i]);
  }
}

TEST(InitializerTest, UniformHasTheRequestedScaleAndDependsOnSeed) {
  TensorSpec spec = Spec(TensorSpec::UNIFORM, 20000, 0.25f);
  std::vector<float> a(20000), b(20000);
  InitializeSlice(spec, 1, {0, 20000}, absl::MakeSpan(a));
  InitializeSlice(spec, 2, {0, 20000}, absl::MakeSpan(b));
  double sum = 0, sq = 0;
  int same = 0;
  for (int i = 0; i < 20000; ++i) {
    EXPECT_LE(std::fabs(a[i]), 0.25f);
    sum += a[i];
    sq += a[i] * a[i];
    same += a[i] == b[i];
  }
  EXPECT_NEAR(sum / 20000, 0.0, 0.01);
  EXPECT_NEAR(sq / 20000, 0.25 * 0.25 / 3, 0.002);  // variance of U(-a, a) is a^2/3
  EXPECT_LT(same, 10);
}

TEST(InitializerTest, NormalHasTheRequestedStd) {
  TensorSpec spec = Spec(TensorSpec::NORMAL, 20000, 2.0f);
  std::vector<float> a(20000);
  InitializeSlice(spec, 3, {0, 20000}, absl::MakeSpan(a));
  double sq = 0;
  for (float v : a) sq += v * v;
  EXPECT_NEAR(std::sqrt(sq / 20000), 2.0, 0.05);
}

TEST(InitializerTest, ZerosAreZero) {
  TensorSpec spec = Spec(TensorSpec::ZEROS, 10, 1.0f);
  std::vector<float> a(10, 5.0f);
  InitializeSlice(spec, 3, {0, 10}, absl::MakeSpan(a));
  for (float v : a) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace tessera
