// --device parsing and backend selection on this machine (GPU or not).

#include "gtest/gtest.h"
#include "worker/device.h"

#if defined(TESSERA_HAVE_CUDA)
#include "kernels/cuda/runtime.h"
#endif

namespace tessera::worker {
namespace {

int Devices() {
#if defined(TESSERA_HAVE_CUDA)
  return kernels::cuda::DeviceCount();
#else
  return 0;
#endif
}

TEST(DeviceSpecTest, ParsesTheFourForms) {
  EXPECT_EQ(ParseDeviceSpec("auto")->kind, DeviceSpec::kAuto);
  EXPECT_EQ(ParseDeviceSpec("cpu")->kind, DeviceSpec::kCpu);
  const absl::StatusOr<DeviceSpec> cuda = ParseDeviceSpec("cuda");
  ASSERT_TRUE(cuda.ok());
  EXPECT_EQ(cuda->kind, DeviceSpec::kCuda);
  EXPECT_EQ(cuda->ordinal, 0);
  const absl::StatusOr<DeviceSpec> three = ParseDeviceSpec("cuda:3");
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->ordinal, 3);
  EXPECT_EQ(three->ToString(), "cuda:3");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", "cuda0", "cpu:0"}) {
    const absl::StatusOr<DeviceSpec> s = ParseDeviceSpec(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(CreateBackendTest, CpuAlwaysWorks) {
  absl::StatusOr<std::unique_ptr<ComputeBackend>> b = CreateBackend(DeviceSpec{DeviceSpec::kCpu, 0});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->host_memory());
  EXPECT_EQ((*b)->name().rfind("cpu", 0), 0u) << (*b)->name();
}

TEST(CreateBackendTest, AutoUsesAGpuOnlyWhenThereIsOne) {
  absl::StatusOr<std::unique_ptr<ComputeBackend>> b = CreateBackend(DeviceSpec{});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name().rfind(Devices() > 0 ? "cuda:0" : "cpu", 0), 0u) << (*b)->name();
}

TEST(CreateBackendTest, CudaWithoutADeviceIsAClearError) {
  if (Devices() > 0) GTEST_SKIP() << "a CUDA device is present";
  absl::StatusOr<std::unique_ptr<ComputeBackend>> b =
      CreateBackend(DeviceSpec{DeviceSpec::kCuda, 0});
  ASSERT_FALSE(b.ok());
  if (BuiltWithCuda()) {
    EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
    EXPECT_NE(b.status().message().find("cudaGetDeviceCount"), std::string::npos) << b.status();
  } else {
    EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
    EXPECT_NE(b.status().message().find("without CUDA"), std::string::npos) << b.status();
  }
  EXPECT_NE(b.status().message().find("cuda:0"), std::string::npos) << b.status();
}

TEST(CreateBackendTest, CudaOrdinalPastTheLastDeviceIsRejected) {
  if (Devices() == 0) GTEST_SKIP() << "no CUDA device";
  absl::StatusOr<std::unique_ptr<ComputeBackend>> b =
      CreateBackend(DeviceSpec{DeviceSpec::kCuda, Devices()});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
}

}  // namespace
}  // namespace tessera::worker
