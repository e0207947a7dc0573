// Blocked, packed GEMM in the style of BLIS / GotoBLAS:
//
//   for jc in steps of kNc over n:          B panel  (kKc x kNc) packed, L3-resident
//     for pc in steps of kKc over k:
//       pack op(B)[pc.., jc..] into kNr-wide column strips
//       for ic in steps of kMc over m:      A block  (kMc x kKc) packed, L2-resident
//         pack op(A)[ic.., pc..] into kMr-high row strips
//         for each kNr strip, each kMr strip: micro-kernel (kMr x kNr tile of C)
//
// Packing turns all four transposition cases into the same contiguous,
// zero-padded layout, so one micro-kernel serves NN, NT, TN and TT, and edge
// tiles need no special code inside the k loop. beta is applied once up front,
// then every micro-kernel call accumulates C += alpha * (A strip * B strip).

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define TESSERA_KERNELS_X86 1
#include <immintrin.h>
#endif

namespace tessera::kernels {
namespace internal {
namespace {

constexpr int kMr = 6;      // rows of C per micro-kernel tile
constexpr int kNr = 16;     // columns of C per micro-kernel tile (two 8-float vectors)
constexpr int kKc = 256;    // depth of one packed block: a kKc x kNr strip of B is 16 KiB (L1)
constexpr int kMc = 120;    // rows of one packed A block: 120 KiB (L2); multiple of kMr
constexpr int kNc = 3072;   // columns of one packed B panel: 3 MiB (L3); multiple of kNr

// A grow-only, 64-byte aligned scratch buffer; one per thread and operand.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data_); }

  float* Get(size_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (data_ == nullptr) std::abort();  // out of memory: nothing sensible to return
      capacity_ = bytes / sizeof(float);
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

// Packs op(A)[i0 .. i0+mc) x [p0 .. p0+kc) into ceil(mc/kMr) strips; strip s holds
// kc groups of kMr floats (rows s*kMr .. s*kMr+kMr-1 at depth p), zero-padded.
void PackA(bool trans_a, const float* a, int lda, int i0, int mc, int p0, int kc, float* dst) {
  for (int s = 0; s < mc; s += kMr) {
    const int rows = std::min(kMr, mc - s);
    float* strip = dst + static_cast<ptrdiff_t>(s) * kc;
    if (!trans_a) {
      // A row-major m x k: each row of the strip is contiguous in memory.
      for (int r = 0; r < rows; ++r) {
        const float* src = a + static_cast<ptrdiff_t>(i0 + s + r) * lda + p0;
        for (int p = 0; p < kc; ++p) strip[p * kMr + r] = src[p];
      }
    } else {
      // A stored k x m: the kMr values at one depth are contiguous.
      for (int p = 0; p < kc; ++p) {
        const float* src = a + static_cast<ptrdiff_t>(p0 + p) * lda + i0 + s;
        for (int r = 0; r < rows; ++r) strip[p * kMr + r] = src[r];
      }
    }
    if (rows < kMr) {
      for (int p = 0; p < kc; ++p) {
        for (int r = rows; r < kMr; ++r) strip[p * kMr + r] = 0.0f;
      }
    }
  }
}

// Packs op(B)[p0 .. p0+kc) x [j0 .. j0+nc) into ceil(nc/kNr) strips; strip s holds
// kc rows of kNr floats (columns s*kNr .. s*kNr+kNr-1), zero-padded.
void PackB(bool trans_b, const float* b, int ldb, int p0, int kc, int j0, int nc, float* dst) {
  for (int s = 0; s < nc; s += kNr) {
    const int cols = std::min(kNr, nc - s);
    float* strip = dst + static_cast<ptrdiff_t>(s) * kc;
    if (!trans_b) {
      for (int p = 0; p < kc; ++p) {
        const float* src = b + static_cast<ptrdiff_t>(p0 + p) * ldb + j0 + s;
        float* out = strip + p * kNr;
        std::memcpy(out, src, sizeof(float) * cols);
        for (int j = cols; j < kNr; ++j) out[j] = 0.0f;
      }
    } else {
      // B stored n x k: each column of op(B) is a contiguous row of B.
      for (int j = 0; j < cols; ++j) {
        const float* src = b + static_cast<ptrdiff_t>(j0 + s + j) * ldb + p0;
        for (int p = 0; p < kc; ++p) strip[p * kNr + j] = src[p];
      }
      if (cols < kNr) {
        for (int p = 0; p < kc; ++p) {
          for (int j = cols; j < kNr; ++j) strip[p * kNr + j] = 0.0f;
        }
      }
    }
  }
}

// C[0..rows) x [0..cols) += alpha * tile, where tile is kMr x kNr, row stride kNr.
inline void AddTile(const float* tile, float alpha, float* c, int ldc, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    float* row = c + static_cast<ptrdiff_t>(r) * ldc;
    for (int j = 0; j < cols; ++j) row[j] += alpha * tile[r * kNr + j];
  }
}

// Portable micro-kernel on 4-float vectors (GCC/Clang vector extensions, SSE2
// on baseline x86-64). It covers the tile in two 6x8 halves so the twelve
// accumulators plus operands fit in the sixteen registers of SSE2.
typedef float Float4 __attribute__((vector_size(16)));

void KernelGeneric(int kc, const float* a, const float* b, float alpha, float* c, int ldc,
                   int rows, int cols) {
  alignas(16) float tile[kMr * kNr];
  for (int half = 0; half < kNr; half += 8) {
    Float4 acc[kMr][2] = {};
    const float* ap = a;
    const float* bp = b + half;
    for (int p = 0; p < kc; ++p) {
      // Packed strips are 64-byte aligned with a 16-float row stride.
      const Float4 b0 = *reinterpret_cast<const Float4*>(bp);
      const Float4 b1 = *reinterpret_cast<const Float4*>(bp + 4);
      for (int r = 0; r < kMr; ++r) {
        const Float4 av = {ap[r], ap[r], ap[r], ap[r]};
        acc[r][0] += av * b0;
        acc[r][1] += av * b1;
      }
      ap += kMr;
      bp += kNr;
    }
    for (int r = 0; r < kMr; ++r) {
      *reinterpret_cast<Float4*>(tile + r * kNr + half) = acc[r][0];
      *reinterpret_cast<Float4*>(tile + r * kNr + half + 4) = acc[r][1];
    }
  }
  AddTile(tile, alpha, c, ldc, rows, cols);
}

#if TESSERA_KERNELS_X86
// 6x16 tile in 12 ymm accumulators; per depth step two aligned loads of B,
// six broadcasts of A and twelve FMAs.
__attribute__((target("avx2,fma"))) void KernelAvx2Fma(int kc, const float* a, const float* b,
                                                        float alpha, float* c, int ldc, int rows,
                                                        int cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += kMr;
    b += kNr;
  }
  if (rows == kMr && cols == kNr) {
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                                {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < kMr; ++r) {
      float* row = c + static_cast<ptrdiff_t>(r) * ldc;
      _mm256_storeu_ps(row, _mm256_fmadd_ps(va, acc[r][0], _mm256_loadu_ps(row)));
      _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, acc[r][1], _mm256_loadu_ps(row + 8)));
    }
    return;
  }
  alignas(32) float tile[kMr * kNr];
  _mm256_store_ps(tile + 0 * kNr, c00);
  _mm256_store_ps(tile + 0 * kNr + 8, c01);
  _mm256_store_ps(tile + 1 * kNr, c10);
  _mm256_store_ps(tile + 1 * kNr + 8, c11);
  _mm256_store_ps(tile + 2 * kNr, c20);
  _mm256_store_ps(tile + 2 * kNr + 8, c21);
  _mm256_store_ps(tile + 3 * kNr, c30);
  _mm256_store_ps(tile + 3 * kNr + 8, c31);
  _mm256_store_ps(tile + 4 * kNr, c40);
  _mm256_store_ps(tile + 4 * kNr + 8, c41);
  _mm256_store_ps(tile + 5 * kNr, c50);
  _mm256_store_ps(tile + 5 * kNr + 8, c51);
  AddTile(tile, alpha, c, ldc, rows, cols);
}
#endif  // TESSERA_KERNELS_X86

using MicroKernel = void (*)(int kc, const float* a, const float* b, float alpha, float* c,
                             int ldc, int rows, int cols);

// C = beta * C over an m x n block; beta == 0 overwrites (drops NaN/Inf).
void ScaleC(int m, int n, float beta, float* c, int ldc) {
  if (beta == 1.0f) return;
  for (int i = 0; i < m; ++i) {
    float* row = c + static_cast<ptrdiff_t>(i) * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + n, 0.0f);
    } else {
      for (int j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

void GemmBlocked(MicroKernel kernel, bool trans_a, bool trans_b, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  ScaleC(m, n, beta, c, ldc);
  if (k <= 0 || alpha == 0.0f) return;

  thread_local PackBuffer a_buffer;
  thread_local PackBuffer b_buffer;
  const int nc_max = std::min(kNc, (n + kNr - 1) / kNr * kNr);
  const int kc_max = std::min(kKc, k);
  const int mc_max = std::min(kMc, (m + kMr - 1) / kMr * kMr);
  float* a_packed = a_buffer.Get(static_cast<size_t>(mc_max) * kc_max);
  float* b_packed = b_buffer.Get(static_cast<size_t>(nc_max) * kc_max);

  for (int jc = 0; jc < n; jc += kNc) {
    const int nc = std::min(kNc, n - jc);
    for (int pc = 0; pc < k; pc += kKc) {
      const int kc = std::min(kKc, k - pc);
      PackB(trans_b, b, ldb, pc, kc, jc, nc, b_packed);
      for (int ic = 0; ic < m; ic += kMc) {
        const int mc = std::min(kMc, m - ic);
        PackA(trans_a, a, lda, ic, mc, pc, kc, a_packed);
        for (int jr = 0; jr < nc; jr += kNr) {
          const int cols = std::min(kNr, nc - jr);
          const float* b_strip = b_packed + static_cast<ptrdiff_t>(jr) * kc;
          for (int ir = 0; ir < mc; ir += kMr) {
            const int rows = std::min(kMr, mc - ir);
            float* c_tile = c + static_cast<ptrdiff_t>(ic + ir) * ldc + jc + jr;
            kernel(kc, a_packed + static_cast<ptrdiff_t>(ir) * kc, b_strip, alpha, c_tile, ldc,
                   rows, cols);
          }
        }
      }
    }
  }
}

}  // namespace

bool CpuHasAvx2Fma() {
#if TESSERA_KERNELS_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

void GemmOnPath(GemmPath path, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  MicroKernel kernel = KernelGeneric;
#if TESSERA_KERNELS_X86
  if (path == GemmPath::kAvx2Fma) kernel = KernelAvx2Fma;
#else
  (void)path;
#endif
  GemmBlocked(kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace internal

void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  const internal::GemmPath path = internal::CpuHasAvx2Fma() ? internal::GemmPath::kAvx2Fma
                                                            : internal::GemmPath::kGeneric;
  internal::GemmOnPath(path, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char* GemmImplementation() {
  return internal::CpuHasAvx2Fma() ? "avx2+fma" : "generic";
}

}  // namespace tessera::kernels
