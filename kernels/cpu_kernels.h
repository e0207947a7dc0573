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
// The CUDA versions (kernels/cuda/cuda_kernels.h) keep the same arguments over
// device pointers plus a stream; these are the reference they are tested
// against. fp32 <-> fp16/bf16 conversions are in kernels/convert.h.

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

// ---- Fused bias + activation -------------------------------------------

enum class Activation {
  kIdentity,  // y = z
  kRelu,      // y = max(0, z)
  kGelu,      // y = z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2))  (exact GELU, not tanh)
};

// y[i][j] = act(x[i][j] + bias[j]) for an m x n matrix. In place (y == x) is
// allowed, but a GELU layer's backward needs x, so keep it when act == kGelu.
// REQUIRES: m, n >= 0; x and y hold m*n floats (dense rows), bias holds n.
void BiasActivation(int m, int n, const float* x, const float* bias, Activation act, float* y);

// Backward of BiasActivation, fused with the bias gradient:
//   dz[i][j] = dy[i][j] * act'(x[i][j] + bias[j])
//   db[j]    = sum_i dz[i][j]        (skipped when db is null; summed in double)
// Which forward values it reads depends on act:
//   kIdentity: none;  kRelu: y (the forward output; dz = dy where y > 0);
//   kGelu: x and bias (the forward input; y is not read and may be null).
// Unused pointers may be null. dz may equal dy. dz and db are write-only.
// REQUIRES: m, n >= 0; the pointers act reads hold m*n (x, y, dy, dz) / n floats.
void BiasActivationBackward(int m, int n, Activation act, const float* dy, const float* x,
                            const float* bias, const float* y, float* dz, float* db);

// ---- Embeddings ---------------------------------------------------------

// out[i][:] = table[ids[i]][:] for i < n (rows of `dim` floats).
// REQUIRES: n >= 0, dim >= 1, 0 <= ids[i] < table_rows; out holds n*dim floats
//   and does not overlap table.
void EmbeddingGather(int64_t n, int dim, const float* table, int64_t table_rows,
                     const int64_t* ids, float* out);

// Sparse-gradient scatter-add with key deduplication: the n row gradients
// grads[i][:] for keys[i] become one summed row per distinct key.
//   unique_keys[0..u) = the distinct keys, ascending;
//   summed[j][:]      = sum of grads[i][:] over i with keys[i] == unique_keys[j],
//                       added in increasing i (so every backend sums in the
//                       same order and agrees bit for bit).
// Returns u (0 <= u <= n). The first u entries / rows of unique_keys and summed
// are written; the rest are left as they were.
// REQUIRES: n >= 0, dim >= 1; unique_keys holds n, summed n*dim.
int64_t EmbeddingScatterAdd(int64_t n, int dim, const uint64_t* keys, const float* grads,
                            uint64_t* unique_keys, float* summed);

// ---- Fused optimizer updates (worker-local state) -------------------------
// The formulas of the parameter servers (server/optimizer.h), so local and
// remote updates agree. Weight decay is L2 added to the gradient: g' = g + wd w.

// SGD with momentum mu: v = mu v + g'; w -= lr (g' + mu v) if nesterov, else lr v.
// mu == 0: w -= lr g' and velocity is not used (may be null).
// REQUIRES: n >= 0; w, g (and velocity when mu != 0) hold n floats.
void SgdUpdate(int64_t n, float lr, float momentum, bool nesterov, float weight_decay, float* w,
               const float* g, float* velocity);

// Adam at step t (t >= 1, counted after this update's increment):
//   m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
//   w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// with the bias corrections computed in double and rounded to float.
// REQUIRES: n >= 0, t >= 1; w, g, m, v hold n floats.
void AdamUpdate(int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t t, float* w, const float* g, float* m, float* v);

// The bias corrections AdamUpdate uses: {1 - b1^t, 1 - b2^t} as floats.
void AdamBiasCorrections(float beta1, float beta2, int64_t t, float* bc1, float* bc2);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_CPU_KERNELS_H_
