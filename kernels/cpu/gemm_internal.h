#ifndef TESSERA_KERNELS_CPU_GEMM_INTERNAL_H_
#define TESSERA_KERNELS_CPU_GEMM_INTERNAL_H_

// Gemm's code paths, exposed for the kernel tests and the benchmark so both
// can be run on a machine that has AVX2. Not for other callers: use Gemm().

namespace tessera::kernels::internal {

enum class GemmPath {
  kGeneric,  // portable C++, vectorized by the compiler for the baseline ISA
  kAvx2Fma,  // 6x16 register-tiled AVX2+FMA micro-kernel
};

// True when this CPU (and OS) can run GemmPath::kAvx2Fma.
bool CpuHasAvx2Fma();

// Gemm() on a chosen path. REQUIRES: as Gemm(); path == kAvx2Fma only when
// CpuHasAvx2Fma().
void GemmOnPath(GemmPath path, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace tessera::kernels::internal

#endif  // TESSERA_KERNELS_CPU_GEMM_INTERNAL_H_
