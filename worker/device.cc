#include "worker/device.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#if defined(TESSERA_HAVE_CUDA)
#include "kernels/cuda/runtime.h"
#include "worker/cuda_backend.h"
#endif

namespace tessera::worker {

bool BuiltWithCuda() {
#if defined(TESSERA_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<ComputeBackend>> CreateBackend(const DeviceSpec& device) {
  switch (device.kind) {
    case DeviceSpec::kCpu:
      return NewCpuBackend();
    case DeviceSpec::kAuto:
#if defined(TESSERA_HAVE_CUDA)
      if (kernels::cuda::DeviceCount() > 0) return NewCudaBackend(CudaBackendOptions{});
#endif
      return NewCpuBackend();
    case DeviceSpec::kCuda:
#if defined(TESSERA_HAVE_CUDA)
    {
      CudaBackendOptions options;
      options.ordinal = device.ordinal;
      return NewCudaBackend(options);
    }
#else
      return absl::FailedPreconditionError(
          absl::StrCat("--device=", device.ToString(),
                       ": this tessera-worker was built without CUDA (no nvcc at build time); "
                       "use --device=cpu or auto"));
#endif
  }
  return absl::InvalidArgumentError("unknown device kind");
}

}  // namespace tessera::worker
