#ifndef TESSERA_WORKER_DEVICE_H_
#define TESSERA_WORKER_DEVICE_H_

// Picks the ComputeBackend for --device (worker/compute_backend.h).

#include <memory>

#include "absl/status/statusor.h"
#include "worker/compute_backend.h"

namespace tessera::worker {

// Whether this binary was built with the CUDA kernels.
bool BuiltWithCuda();

// auto: CUDA device 0 when this build has CUDA and a device is present, else
// the CPU. cpu: the CPU. cuda[:N]: that device, or an error: FAILED_PRECONDITION
// in a build without CUDA, UNAVAILABLE when there is no device (the CUDA
// error named), INVALID_ARGUMENT for N past the last device.
absl::StatusOr<std::unique_ptr<ComputeBackend>> CreateBackend(const DeviceSpec& device);

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_DEVICE_H_
