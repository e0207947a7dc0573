// Row-major GEMM on cuBLAS (column-major) by computing C^T = op(B)^T op(A)^T:
// a row-major matrix is its transpose in column-major, so the operands swap
// and the transposition flags stay as given.

#include <algorithm>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace tessera::kernels::cuda {

const char* GemmPrecisionName(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kFp32:
      return "fp32";
    case GemmPrecision::kTf32:
      return "tf32";
    case GemmPrecision::kBf16:
      return "bf16";
  }
  return "?";
}

KernelStatus Gemm(const CublasHandle& handle, const Stream& stream, GemmPrecision precision,
                  bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                  int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m < 0 || n < 0 || k < 0) {
    return InvalidArgument("Gemm: negative size m=" + std::to_string(m) +
                           " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
  if ((trans_a ? lda < m : lda < k) || (trans_b ? ldb < k : ldb < n) || ldc < n) {
    return InvalidArgument("Gemm: leading dimension too small");
  }
  if (m == 0 || n == 0) return KernelStatus::Ok();
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (precision == GemmPrecision::kTf32) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  if (precision == GemmPrecision::kBf16) compute = CUBLAS_COMPUTE_32F_FAST_16BF;
  TESSERA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle.get(), stream.get()));
  // cuBLAS wants every leading dimension >= 1 even when k == 0 reads nothing.
  const int ld_a = std::max(lda, 1), ld_b = std::max(ldb, 1);
  return FromCublas(
      cublasGemmEx(handle.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_32F, ld_b, a,
                   CUDA_R_32F, ld_a, &beta, c, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT),
      std::string("cublasGemmEx(") + GemmPrecisionName(precision) + ", m=" + std::to_string(m) +
          " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")");
}

}  // namespace tessera::kernels::cuda
