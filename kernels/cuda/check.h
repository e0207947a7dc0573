#ifndef TESSERA_KERNELS_CUDA_CHECK_H_
#define TESSERA_KERNELS_CUDA_CHECK_H_

// CUDA / cuBLAS results -> KernelStatus, for the .cu files of kernels/cuda only
// (needs the CUDA headers).

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "kernels/status.h"

namespace tessera::kernels::cuda {

inline KernelStatus FromCuda(cudaError_t err, const std::string& call) {
  if (err == cudaSuccess) return KernelStatus::Ok();
  KernelCode code = KernelCode::kInternal;
  if (err == cudaErrorMemoryAllocation) code = KernelCode::kResourceExhausted;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
      err == cudaErrorInvalidDevice) {
    code = KernelCode::kUnavailable;
  }
  return KernelStatus(code, call + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

inline KernelStatus FromCublas(cublasStatus_t st, const std::string& call) {
  if (st == CUBLAS_STATUS_SUCCESS) return KernelStatus::Ok();
  const KernelCode code = st == CUBLAS_STATUS_ALLOC_FAILED   ? KernelCode::kResourceExhausted
                          : st == CUBLAS_STATUS_INVALID_VALUE ? KernelCode::kInvalidArgument
                                                              : KernelCode::kInternal;
  return KernelStatus(code, call + ": " + cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ")");
}

// After a <<<...>>> launch: the launch's own error (bad configuration, no
// device, a sticky error of earlier work).
inline KernelStatus CheckLaunch(const char* kernel) {
  return FromCuda(cudaGetLastError(), std::string("launch of ") + kernel);
}

inline KernelStatus InvalidArgument(const std::string& message) {
  return KernelStatus(KernelCode::kInvalidArgument, message);
}

// Blocks for a 1-D grid-stride launch over `items` work items: enough to fill
// any current GPU, capped so huge sizes loop instead.
inline unsigned GridFor(long long items, int threads) {
  long long blocks = (items + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > 65536) blocks = 65536;
  return static_cast<unsigned>(blocks);
}

}  // namespace tessera::kernels::cuda

#define TESSERA_CUDA_RETURN_IF_ERROR(call) \
  TESSERA_KERNEL_RETURN_IF_ERROR(::tessera::kernels::cuda::FromCuda((call), #call))
#define TESSERA_CUBLAS_RETURN_IF_ERROR(call) \
  TESSERA_KERNEL_RETURN_IF_ERROR(::tessera::kernels::cuda::FromCublas((call), #call))

#endif  // TESSERA_KERNELS_CUDA_CHECK_H_
