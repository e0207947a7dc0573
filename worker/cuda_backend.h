#ifndef TESSERA_WORKER_CUDA_BACKEND_H_
#define TESSERA_WORKER_CUDA_BACKEND_H_

// The CUDA ComputeBackend (built only when CMake / Bazel found nvcc).

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_kernels.h"
#include "worker/compute_backend.h"

namespace tessera::worker {

struct CudaBackendOptions {
  int ordinal = 0;
  // Precision of the GEMMs; parameters and gradients stay fp32.
  kernels::cuda::GemmPrecision gemm_precision = kernels::cuda::GemmPrecision::kFp32;
  // Replay each training step from a CUDA graph (ComputeBackend::can_capture).
  // NewCudaBackend turns it off when the environment has TESSERA_CUDA_GRAPHS=0.
  bool graphs = true;
};

// Makes `ordinal` current on the calling thread and creates a compute stream,
// a copy stream and a cuBLAS handle. UNAVAILABLE without a device (naming the
// CUDA error), INVALID_ARGUMENT for an ordinal past the last device.
// The backend must be used from the thread that created it.
absl::StatusOr<std::unique_ptr<ComputeBackend>> NewCudaBackend(const CudaBackendOptions& options);

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_CUDA_BACKEND_H_
