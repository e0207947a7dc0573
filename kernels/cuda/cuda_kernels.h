#ifndef TESSERA_KERNELS_CUDA_CUDA_KERNELS_H_
#define TESSERA_KERNELS_CUDA_CUDA_KERNELS_H_

// The kernels of kernels/cpu_kernels.h and kernels/convert.h on a CUDA device.
//
// Same arguments and the same row-major layout as the CPU versions, but every
// pointer is DEVICE memory (unless stated) and every call only enqueues work
// on `stream` and returns: results are ready once the stream is synchronized
// (or an event recorded after the call has completed). Each call checks its
// arguments and the launch (cudaGetLastError right after it); an error in the
// kernel's execution surfaces at the next synchronization.
// Plain C++ header: no CUDA types.
//
// Thread safety: functions are reentrant; a CublasHandle is used by one thread
// at a time.

#include <cstddef>
#include <cstdint>

#include "kernels/cpu_kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/status.h"

namespace tessera::kernels::cuda {

// ---- GEMM (cuBLAS) ----

enum class GemmPrecision {
  kFp32,  // CUBLAS_COMPUTE_32F: true fp32
  kTf32,  // CUBLAS_COMPUTE_32F_FAST_TF32: tensor cores, inputs rounded to TF32 (~3e-4 rel.)
  kBf16,  // CUBLAS_COMPUTE_32F_FAST_16BF: tensor cores, inputs rounded to bf16 (~1e-3..1e-2)
};
const char* GemmPrecisionName(GemmPrecision p);

// C = alpha * op(A) * op(B) + beta * C, row-major, with the contract of
// kernels::Gemm (beta == 0: C is write-only). A, B, C are fp32 in every
// precision; only the multiply inside cuBLAS changes. Runs on `stream`.
KernelStatus Gemm(const CublasHandle& handle, const Stream& stream, GemmPrecision precision,
                  bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                  int lda, const float* b, int ldb, float beta, float* c, int ldc);

// ---- Bias + activation, column sums, softmax cross-entropy ----

// y = act(x + bias) (kernels::BiasActivation). In place allowed.
KernelStatus BiasActivation(int m, int n, const float* x, const float* bias, Activation act,
                            float* y, const Stream& stream);

// Device floats the workspace of BiasActivationBackward / ColumnSum needs for
// an m x n input (partial column sums of each row split).
size_t ColumnReduceWorkspaceFloats(int m, int n);

// kernels::BiasActivationBackward: dz = dy * act'(.) and, when db is not null,
// db = column sums of dz (partials per row split in `workspace`, then summed in
// double in a fixed order: deterministic). dz may equal dy.
// REQUIRES: workspace holds ColumnReduceWorkspaceFloats(m, n) floats when db
//   is not null (may be null otherwise).
KernelStatus BiasActivationBackward(int m, int n, Activation act, const float* dy,
                                    const float* x, const float* bias, const float* y, float* dz,
                                    float* db, float* workspace, const Stream& stream);

// kernels::ColumnSum: out = alpha * column sums of x + beta * out.
// REQUIRES: workspace as above.
KernelStatus ColumnSum(int m, int n, float alpha, const float* x, float beta, float* out,
                       float* workspace, const Stream& stream);

// kernels::SoftmaxCrossEntropy, one warp per row: writes dlogits (the gradient
// of the mean loss; skipped when dlogits is null = forward only) and ADDS the
// summed loss to *loss_sum and the number of correct rows to *correct (both
// device memory; atomics, one per block, so the loss's last bits depend on
// block order). A label outside [0, classes) adds NaN to the loss.
// dlogits may equal logits. REQUIRES: batch >= 0, classes >= 1.
KernelStatus SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch,
                                 int classes, float* dlogits, double* loss_sum,
                                 unsigned long long* correct, const Stream& stream);

// ---- Embeddings ----

// kernels::EmbeddingGather. An id outside [0, table_rows) gives a NaN row
// instead of an out-of-bounds read.
KernelStatus EmbeddingGather(int64_t n, int dim, const float* table, int64_t table_rows,
                             const int64_t* ids, float* out, const Stream& stream);

// Device bytes of the workspace of EmbeddingScatterAdd for n rows.
KernelStatus EmbeddingScatterAddWorkspaceBytes(int64_t n, size_t* bytes);

// kernels::EmbeddingScatterAdd on the device, deduplicating by sorting:
// a stable radix sort of (key, row index) pairs (CUB), run-length encoding of
// the sorted keys into unique keys and counts, an exclusive scan of the
// counts, then one warp per unique key sums its rows in increasing row order
// (the CPU's order: identical bits). Writes the number of unique keys to
// *num_unique (device memory). REQUIRES: 0 <= n < 2^31; workspace holds
// EmbeddingScatterAddWorkspaceBytes(n) bytes (256-byte aligned, as cudaMalloc gives).
KernelStatus EmbeddingScatterAdd(int64_t n, int dim, const uint64_t* keys, const float* grads,
                                 uint64_t* unique_keys, float* summed, int64_t* num_unique,
                                 void* workspace, size_t workspace_bytes, const Stream& stream);

// ---- Optimizers (kernels::SgdUpdate / AdamUpdate, element-wise, float4) ----

KernelStatus SgdUpdate(int64_t n, float lr, float momentum, bool nesterov, float weight_decay,
                       float* w, const float* g, float* velocity, const Stream& stream);

KernelStatus AdamUpdate(int64_t n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t t, float* w, const float* g, float* m,
                        float* v, const Stream& stream);

// ---- fp32 <-> fp16 / bf16 (kernels/convert.h; same bits as the CPU) ----

KernelStatus FloatToHalf(const float* in, int64_t n, uint16_t* out, const Stream& stream);
KernelStatus HalfToFloat(const uint16_t* in, int64_t n, float* out, const Stream& stream);
KernelStatus FloatToBf16(const float* in, int64_t n, uint16_t* out, const Stream& stream);
KernelStatus Bf16ToFloat(const uint16_t* in, int64_t n, float* out, const Stream& stream);

}  // namespace tessera::kernels::cuda

#endif  // TESSERA_KERNELS_CUDA_CUDA_KERNELS_H_
