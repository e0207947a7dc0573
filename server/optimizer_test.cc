#include "server/optimizer.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"

namespace tessera::server {
namespace {

OptimizerSpec Sgd(float lr, float momentum = 0, bool nesterov = false, float wd = 0) {
  OptimizerSpec s;
  s.set_kind(OptimizerSpec::SGD);
  s.set_learning_rate(lr);
  s.set_momentum(momentum);
  s.set_nesterov(nesterov);
  s.set_weight_decay(wd);
  return s;
}

OptimizerSpec Adagrad(float lr, float initial_accumulator, float epsilon) {
  OptimizerSpec s;
  s.set_kind(OptimizerSpec::ADAGRAD);
  s.set_learning_rate(lr);
  s.set_initial_accumulator(initial_accumulator);
  s.set_epsilon(epsilon);
  return s;
}

OptimizerSpec Adam(float lr, float wd = 0) {
  OptimizerSpec s;
  s.set_kind(OptimizerSpec::ADAM);
  s.set_learning_rate(lr);
  s.set_beta1(0.9f);
  s.set_beta2(0.999f);
  s.set_epsilon(1e-8f);
  s.set_weight_decay(wd);
  return s;
}

// Runs `steps` (one gradient vector each) through a fresh optimizer.
std::vector<float> RunSteps(const OptimizerSpec& spec, std::vector<float> w,
                       const std::vector<std::vector<float>>& steps) {
  auto opt = Optimizer::Create(spec);
  EXPECT_TRUE(opt.ok()) << opt.status();
  auto state = (*opt)->NewState(w.size());
  for (const auto& g : steps) (*opt)->Apply(absl::MakeSpan(w), g, state.get());
  EXPECT_EQ(state->step, static_cast<int64_t>(steps.size()));
  return w;
}

TEST(OptimizerTest, PlainSgd) {
  auto w = RunSteps(Sgd(0.1f), {1.0f, -2.0f}, {{0.5f, 1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.95f);
  EXPECT_FLOAT_EQ(w[1], -2.1f);
}

TEST(OptimizerTest, WeightDecayIsAddedToTheGradient) {
  // g' = g + 0.1 w = [0.6, 0.8].
  auto w = RunSteps(Sgd(0.1f, 0, false, 0.1f), {1.0f, -2.0f}, {{0.5f, 1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.94f);
  EXPECT_FLOAT_EQ(w[1], -2.08f);
}

TEST(OptimizerTest, Momentum) {
  // v1 = 1, w1 = 0.9; v2 = 1.9, w2 = 0.9 - 0.19.
  auto w = RunSteps(Sgd(0.1f, 0.9f), {1.0f}, {{1.0f}, {1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.71f);
}

TEST(OptimizerTest, NesterovMomentum) {
  // v1 = 1, w1 = 1 - 0.1 (1 + 0.9) = 0.81; v2 = 1.9, w2 = 0.81 - 0.1 (1 + 1.71) = 0.539.
  auto w = RunSteps(Sgd(0.1f, 0.9f, true), {1.0f}, {{1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.81f);
  w = RunSteps(Sgd(0.1f, 0.9f, true), {1.0f}, {{1.0f}, {1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.539f);
}

TEST(OptimizerTest, Adagrad) {
  const OptimizerSpec s = Adagrad(0.1f, 0.1f, 1e-10f);
  // acc = 4.1, w = 1 - 0.2 / sqrt(4.1); acc = 8.1, w -= 0.2 / sqrt(8.1).
  auto w = RunSteps(s, {1.0f}, {{2.0f}});
  EXPECT_NEAR(w[0], 0.9012270403, 1e-6);
  w = RunSteps(s, {1.0f}, {{2.0f}, {2.0f}});
  EXPECT_NEAR(w[0], 0.8309542034, 1e-6);
}

TEST(OptimizerTest, AdamIsBiasCorrected) {
  const OptimizerSpec s = Adam(0.1f);
  // Step 1: m^ = g, v^ = g^2, so the step is lr * sign(g).
  auto w = RunSteps(s, {1.0f}, {{2.0f}});
  EXPECT_NEAR(w[0], 0.9, 1e-6);
  // Step 2 with g = -1: m = 0.08, v = 0.004996, bc1 = 0.19, bc2 = 0.001999.
  w = RunSteps(s, {1.0f}, {{2.0f}, {-1.0f}});
  EXPECT_NEAR(w[0], 0.8733662967, 1e-6);
}

TEST(OptimizerTest, StateIsPerBlock) {
  auto opt = Optimizer::Create(Sgd(0.1f, 0.9f));
  ASSERT_TRUE(opt.ok());
  std::vector<float> a = {1.0f}, b = {1.0f};
  auto sa = (*opt)->NewState(1);
  auto sb = (*opt)->NewState(1);
  std::vector<float> g = {1.0f};
  (*opt)->Apply(absl::MakeSpan(a), g, sa.get());
  (*opt)->Apply(absl::MakeSpan(a), g, sa.get());
  (*opt)->Apply(absl::MakeSpan(b), g, sb.get());
  EXPECT_FLOAT_EQ(a[0], 0.71f);
  EXPECT_FLOAT_EQ(b[0], 0.9f);
}

TEST(OptimizerTest, RejectsBadSpecs) {
  OptimizerSpec s;
  s.set_learning_rate(0.1f);
  auto r = Optimizer::Create(s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("optimizer.type"), std::string::npos);

  r = Optimizer::Create(Sgd(0.0f));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("learning_rate"), std::string::npos);

  r = Optimizer::Create(Sgd(0.1f, 1.5f));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("momentum"), std::string::npos);

  r = Optimizer::Create(Sgd(0.1f, 0.0f, true));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OptimizerTest, AStepInPartsOrFromUnalignedBytesIsBitForBitTheWholeStep) {
  const size_t n = 1000;
  for (const OptimizerSpec& spec :
       {Sgd(0.1f), Sgd(0.1f, 0.9f), Sgd(0.1f, 0.9f, true, 0.01f), Adagrad(0.1f, 0.1f, 1e-10f),
        Adam(0.01f, 0.01f)}) {
    auto opt = Optimizer::Create(spec);
    ASSERT_TRUE(opt.ok()) << opt.status();
    auto whole_state = (*opt)->NewState(n);
    auto parts_state = (*opt)->NewState(n);
    auto bytes_state = (*opt)->NewState(n);
    std::vector<float> whole(n), parts(n), from_bytes(n), g(n);
    for (size_t i = 0; i < n; ++i) {
      whole[i] = parts[i] = from_bytes[i] = 0.01f * static_cast<float>(i % 37) - 0.2f;
    }
    // The gradient's bytes at an odd address, as they lie in network buffers.
    std::vector<char> unaligned(n * sizeof(float) + 1);
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < n; ++i) g[i] = 0.003f * static_cast<float>((i * 7 + step) % 29) - 0.04f;
      std::memcpy(unaligned.data() + 1, g.data(), n * sizeof(float));
      (*opt)->Apply(absl::MakeSpan(whole), g, whole_state.get());
      // Parts of uneven sizes, in order, as a step reads a gradient block by block.
      for (size_t b = 0, k = 1; b < n; b += k, k = k * 3 + 1) {
        const size_t m = std::min(k, n - b);
        (*opt)->ApplyPart(parts.data() + b, g.data() + b, m, parts_state.get(), b);
        (*opt)->ApplyPartBytes(from_bytes.data() + b, unaligned.data() + 1 + b * sizeof(float),
                               m, bytes_state.get(), b);
      }
      (*opt)->FinishStep(parts_state.get());
      (*opt)->FinishStep(bytes_state.get());
    }
    EXPECT_EQ(parts, whole) << spec.ShortDebugString();
    EXPECT_EQ(parts_state->slot0, whole_state->slot0) << spec.ShortDebugString();
    EXPECT_EQ(parts_state->slot1, whole_state->slot1) << spec.ShortDebugString();
    EXPECT_EQ(parts_state->step, 3);
    EXPECT_EQ(from_bytes, whole) << spec.ShortDebugString();
    EXPECT_EQ(bytes_state->slot0, whole_state->slot0) << spec.ShortDebugString();
    EXPECT_EQ(bytes_state->slot1, whole_state->slot1) << spec.ShortDebugString();
  }
}

}  // namespace
}  // namespace tessera::server
