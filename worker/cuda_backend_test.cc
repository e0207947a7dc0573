// The Model on the CUDA backend against the same Model on the CPU backend:
// same parameters and batch, gradients and loss within fp32 tolerance, the
// gradient callback once per tensor, last layer first. Skips without a device.

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/runtime.h"
#include "worker/cuda_backend.h"
#include "worker/model.h"

namespace tessera::worker {
namespace {

double RelErr(absl::Span<const float> got, absl::Span<const float> want) {
  double d = 0, n = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    d += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    n += double(want[i]) * want[i];
  }
  return std::sqrt(d) / std::sqrt(n);
}

TEST(CudaModelTest, MatchesTheCpuModel) {
  if (kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  absl::StatusOr<std::unique_ptr<ComputeBackend>> cuda = NewCudaBackend(CudaBackendOptions{});
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  ModelSpec spec;
  spec.set_kind(ModelSpec::MLP);
  spec.add_hidden_layers(67);
  spec.add_hidden_layers(33);
  const int dim = 45, classes = 10, batch = 29;
  auto cpu_model = Model::Create(spec, dim, classes, batch);
  auto gpu_model = Model::Create(spec, dim, classes, batch, cuda->get());
  ASSERT_TRUE(cpu_model.ok() && gpu_model.ok());
  (*cpu_model)->InitializeParameters(5);
  (*gpu_model)->InitializeParameters(5);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(batch * dim);
  for (float& v : x) v = u(rng);
  std::vector<int32_t> y(batch);
  for (int i = 0; i < batch; ++i) y[i] = (i * 3) % classes;
  std::vector<int> order;
  auto cpu = (*cpu_model)->ForwardBackward(x.data(), y.data(), batch);
  auto gpu = (*gpu_model)->ForwardBackward(x.data(), y.data(), batch, [&](int t) {
    order.push_back(t);
    return absl::OkStatus();
  });
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << gpu.status();
  EXPECT_NEAR(gpu->loss, cpu->loss, 1e-5 * (1 + cpu->loss));
  EXPECT_EQ(gpu->correct, cpu->correct);
  EXPECT_EQ(order, (std::vector<int>{4, 5, 2, 3, 0, 1}));
  for (int t = 0; t < (*cpu_model)->num_tensors(); ++t) {
    EXPECT_LT(RelErr((*gpu_model)->grad(t), (*cpu_model)->grad(t)), 1e-5) << "tensor " << t;
  }
  auto cpu_eval = (*cpu_model)->Evaluate(x.data(), y.data(), batch);
  auto gpu_eval = (*gpu_model)->Evaluate(x.data(), y.data(), batch);
  ASSERT_TRUE(cpu_eval.ok() && gpu_eval.ok());
  EXPECT_NEAR(gpu_eval->loss, cpu_eval->loss, 1e-5 * (1 + cpu_eval->loss));
  EXPECT_EQ(gpu_eval->correct, cpu_eval->correct);
}

}  // namespace
}  // namespace tessera::worker
