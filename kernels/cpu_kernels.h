#ifndef TESSERA_KERNELS_CPU_KERNELS_H_
#define TESSERA_KERNELS_CPU_KERNELS_H_

// Dense fp32 math for the worker's models, on the CPU.
//
// Plain C++: raw pointers and sizes, no Abseil, no logging. Every matrix is
// row-major; `ld*` is the distance in elements between the starts of two rows.
// None of these functions allocates per call except Gemm's packing buffers,
// which are thread-local and grow once to their largest size.
//
// Thread safety: every function is reentrant; calls on disjoint outputs may run
// on different threads at once. Each call runs on the calling thread only.
//
// The CUDA versions (kernels/cuda, later) keep the same signatures over device
// pointers; these are the reference they are tested against.

#include <cstdint>

namespace tessera::kernels {

// C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
//   op(A) is m x k: A is m x k (lda >= k) when !trans_a, k x m (lda >= m) when trans_a.
//   op(B) is k x n: B is k x n (ldb >= n) when !trans_b, n x k (ldb >= k) when trans_b.
//   C is m x n, ldc >= n.
// When beta == 0, C is write-only: NaN or Inf already in C does not propagate.
// When k == 0, C = beta * C. m == 0 or n == 0 is a no-op.
// REQUIRES: m, n, k >= 0; C does not overlap A or B; pointers valid for the
//   extents above (they may be null when the matching extent is 0).
// Uses AVX2+FMA when the CPU has them (checked once at run time), portable
// code otherwise; results of the two paths agree to fp32 rounding.
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

// Name of the Gemm code path this CPU uses: "avx2+fma" or "generic".
const char* GemmImplementation();

// y[i][j] = x[i][j] + bias[j] for an m x n matrix. In place (y == x) is allowed.
// REQUIRES: m, n >= 0; x and y hold m*n floats (dense rows), bias holds n.
void BiasAdd(int m, int n, const float* x, const float* bias, float* y);

// Fused dense-layer epilogue: y[i][j] = max(0, x[i][j] + bias[j]).
// In place (y == x) is allowed. REQUIRES: as BiasAdd.
void BiasRelu(int m, int n, const float* x, const float* bias, float* y);

// ReLU backward over `size` elements: dx = dy where y > 0, else 0. `y` is the
// ReLU's output. In place (dx == dy) is allowed. REQUIRES: size >= 0.
void ReluBackward(int64_t size, const float* dy, const float* y, float* dx);

// Bias gradient: out[j] = alpha * sum_i x[i][j] + beta * out[j] for an m x n
// matrix. beta == 0 makes out write-only. Sums in double.
// REQUIRES: m, n >= 0; x holds m*n floats, out holds n.
void ColumnSum(int m, int n, float alpha, const float* x, float beta, float* out);

// Softmax cross-entropy over `batch` rows of `classes` logits, forward and
// backward fused. Writes into `dlogits` the gradient of the MEAN loss:
//   dlogits[i][j] = (softmax(logits[i])[j] - [j == labels[i]]) / batch
// (max-subtracted, so large logits do not overflow). Adds to *loss_sum the
// SUMMED loss  sum_i -log softmax(logits[i])[labels[i]]  and to *correct the
// number of rows whose argmax (first maximum) equals the label.
// `dlogits` may equal `logits`. loss_sum and correct may be null.
// REQUIRES: batch >= 0, classes >= 1, 0 <= labels[i] < classes.
void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                         float* dlogits, double* loss_sum, int64_t* correct);

// Forward only, for evaluation: adds the summed loss and the correct count as
// SoftmaxCrossEntropy does, writes nothing else. REQUIRES: as above.
void SoftmaxCrossEntropyLoss(const float* logits, const int32_t* labels, int batch, int classes,
                             double* loss_sum, int64_t* correct);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_CPU_KERNELS_H_
