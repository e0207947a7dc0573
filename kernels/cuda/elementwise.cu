// Bias + activation (forward, and backward fused with the bias gradient),
// column sums and fused softmax cross-entropy.
//
// Forward bias+activation is a flat grid-stride loop over the m*n elements,
// float4 when n % 4 == 0 and the pointers are 16-byte aligned (the bias
// float4 then never straddles a row). The column reductions use 32 x 8 blocks:
// a warp reads 32 consecutive columns of a row (one 128-byte line), blocks
// tile the columns and split the rows so that ~1024 blocks fill the GPU; each
// block writes one partial sum per column, and a second kernel adds the
// partials of each column in double, in split order (deterministic).

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <Activation A>
__device__ __forceinline__ float Act(float z) {
  if constexpr (A == Activation::kRelu) {
    return z > 0.0f ? z : 0.0f;
  } else if constexpr (A == Activation::kGelu) {
    return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
  } else {
    return z;
  }
}

__device__ __forceinline__ float GeluGrad(float z) {
  const float cdf = 0.5f * (1.0f + erff(z * 0.70710678118654752f));
  return cdf + z * 0.39894228040143268f * expf(-0.5f * z * z);
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <Activation A, typename Index>
__global__ void BiasActivationKernel(Index m_n, Index n, const float* x, const float* bias,
                                     float* y) {
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < m_n;
       i += Index(gridDim.x) * blockDim.x) {
    y[i] = Act<A>(x[i] + __ldg(bias + i % n));
  }
}

template <Activation A, typename Index>
__global__ void BiasActivationKernel4(Index vecs, Index n4, const float4* x, const float4* bias,
                                      float4* y) {
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < vecs;
       i += Index(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    const float4 b = __ldg(bias + i % n4);
    y[i] = make_float4(Act<A>(v.x + b.x), Act<A>(v.y + b.y), Act<A>(v.z + b.z),
                       Act<A>(v.w + b.w));
  }
}

template <Activation A, typename Index>
KernelStatus LaunchBiasActivation(Index m, Index n, const float* x, const float* bias, float* y,
                                  const Stream& stream) {
  const Index total = m * n;
  if (n % 4 == 0 && Aligned16(x) && Aligned16(y) && Aligned16(bias)) {
    const Index vecs = total / 4;
    BiasActivationKernel4<A, Index><<<GridFor(vecs, kThreads), kThreads, 0, stream.get()>>>(
        vecs, n / 4, reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(bias),
        reinterpret_cast<float4*>(y));
    return CheckLaunch("BiasActivationKernel4");
  }
  BiasActivationKernel<A, Index>
      <<<GridFor(total, kThreads), kThreads, 0, stream.get()>>>(total, n, x, bias, y);
  return CheckLaunch("BiasActivationKernel");
}

template <Activation A>
KernelStatus DispatchIndex(int m, int n, const float* x, const float* bias, float* y,
                           const Stream& stream) {
  const int64_t total = int64_t{m} * n;
  if (total < (int64_t{1} << 32)) {
    return LaunchBiasActivation<A, uint32_t>(m, n, x, bias, y, stream);
  }
  return LaunchBiasActivation<A, uint64_t>(m, n, x, bias, y, stream);
}

// ---- column reductions ----

constexpr int kColTile = 32;   // columns per block (threadIdx.x)
constexpr int kRowLanes = 8;   // threadIdx.y

int RowSplits(int m, int n) {
  const int col_tiles = (n + kColTile - 1) / kColTile;
  int splits = (1024 + col_tiles - 1) / col_tiles;
  const int max_splits = (m + kRowLanes - 1) / kRowLanes;  // at least 8 rows per split
  if (splits > max_splits) splits = max_splits;
  if (splits < 1) splits = 1;
  return splits;
}

// Partial column sums of dz = dy * act'(.) over one row split; writes dz when
// kWriteDz. partial[split][col].
template <Activation A, bool kWriteDz>
__global__ void ColumnReduceKernel(int m, int n, int rows_per_split, const float* dy,
                                   const float* x, const float* bias, const float* y, float* dz,
                                   float* partial) {
  __shared__ float sums[kRowLanes][kColTile + 1];
  const int col = blockIdx.x * kColTile + threadIdx.x;
  const int split = blockIdx.y;
  const int row_begin = split * rows_per_split;
  const int row_end = min(m, row_begin + rows_per_split);
  float acc = 0.0f;
  if (col < n) {
    const float b = A == Activation::kGelu ? bias[col] : 0.0f;
    for (int r = row_begin + threadIdx.y; r < row_end; r += kRowLanes) {
      const int64_t i = int64_t{r} * n + col;
      float g = dy[i];
      if constexpr (A == Activation::kRelu) {
        g = y[i] > 0.0f ? g : 0.0f;
      } else if constexpr (A == Activation::kGelu) {
        g *= GeluGrad(x[i] + b);
      }
      if constexpr (kWriteDz) dz[i] = g;
      acc += g;
    }
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < n) {
    float s = 0.0f;
    for (int k = 0; k < kRowLanes; ++k) s += sums[k][threadIdx.x];
    partial[int64_t{split} * n + col] = s;
  }
}

__global__ void FinishColumnSumKernel(int n, int splits, const float* partial, float alpha,
                                      float beta, float* out) {
  for (int col = blockIdx.x * blockDim.x + threadIdx.x; col < n; col += gridDim.x * blockDim.x) {
    double s = 0.0;
    for (int k = 0; k < splits; ++k) s += partial[int64_t{k} * n + col];
    const float scaled = static_cast<float>(alpha * s);
    out[col] = beta == 0.0f ? scaled : scaled + beta * out[col];
  }
}

template <Activation A, bool kWriteDz>
KernelStatus LaunchColumnReduce(int m, int n, const float* dy, const float* x, const float* bias,
                                const float* y, float* dz, float alpha, float beta, float* out,
                                float* workspace, const Stream& stream) {
  const int splits = RowSplits(m, n);
  const int rows_per_split = (m + splits - 1) / splits;
  const dim3 grid((n + kColTile - 1) / kColTile, splits);
  const dim3 block(kColTile, kRowLanes);
  ColumnReduceKernel<A, kWriteDz><<<grid, block, 0, stream.get()>>>(m, n, rows_per_split, dy, x,
                                                                     bias, y, dz, workspace);
  TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("ColumnReduceKernel"));
  FinishColumnSumKernel<<<GridFor(n, kThreads), kThreads, 0, stream.get()>>>(n, splits, workspace,
                                                                             alpha, beta, out);
  return CheckLaunch("FinishColumnSumKernel");
}

// dz = dy * act'(.) without the bias gradient: flat grid-stride.
template <Activation A>
__global__ void ActivationBackwardKernel(int64_t total, int n, const float* dy, const float* x,
                                         const float* bias, const float* y, float* dz) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    float g = dy[i];
    if constexpr (A == Activation::kRelu) {
      g = y[i] > 0.0f ? g : 0.0f;
    } else if constexpr (A == Activation::kGelu) {
      g *= GeluGrad(x[i] + bias[i % n]);
    }
    dz[i] = g;
  }
}

// ---- softmax cross-entropy: one warp per row ----

constexpr int kWarpsPerBlock = 8;

__global__ void SoftmaxCrossEntropyKernel(const float* logits, const int32_t* labels, int batch,
                                          int classes, float* dlogits, double* loss_sum,
                                          unsigned long long* correct) {
  __shared__ double block_loss[kWarpsPerBlock];
  __shared__ unsigned block_correct[kWarpsPerBlock];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float inv_batch = 1.0f / static_cast<float>(batch);
  double warp_loss = 0.0;
  unsigned warp_correct = 0;
  for (int row = blockIdx.x * kWarpsPerBlock + warp; row < batch;
       row += gridDim.x * kWarpsPerBlock) {
    const float* z = logits + int64_t{row} * classes;
    // One pass: running max (first index of the maximum) and the sum of
    // exp(z - max), rescaled when the max grows.
    float mx = -INFINITY, sum = 0.0f;
    int arg = classes;
    for (int j = lane; j < classes; j += 32) {
      const float v = z[j];
      if (v > mx) {
        sum = sum * expf(mx - v) + 1.0f;
        mx = v;
        arg = j;
      } else {
        sum += expf(v - mx);
      }
    }
    for (int off = 16; off > 0; off /= 2) {
      const float o_mx = __shfl_xor_sync(0xffffffffu, mx, off);
      const float o_sum = __shfl_xor_sync(0xffffffffu, sum, off);
      const int o_arg = __shfl_xor_sync(0xffffffffu, arg, off);
      const float new_mx = fmaxf(mx, o_mx);
      const float a = mx == -INFINITY ? 0.0f : sum * expf(mx - new_mx);
      const float b = o_mx == -INFINITY ? 0.0f : o_sum * expf(o_mx - new_mx);
      if (o_mx > mx || (o_mx == mx && o_arg < arg)) arg = o_arg;
      mx = new_mx;
      sum = a + b;
    }
    const int label = labels[row];
    const bool valid = label >= 0 && label < classes;
    const float z_label = valid ? z[label] : NAN;  // read before dlogits may overwrite it
    if (lane == 0) {
      warp_loss += -(static_cast<double>(z_label) - mx - log(static_cast<double>(sum)));
      warp_correct += (valid && arg == label) ? 1u : 0u;
    }
    if (dlogits != nullptr) {
      float* d = dlogits + int64_t{row} * classes;
      const float inv_sum = 1.0f / sum;
      __syncwarp();
      for (int j = lane; j < classes; j += 32) {
        const float p = expf(z[j] - mx) * inv_sum;
        d[j] = (p - (j == label ? 1.0f : 0.0f)) * inv_batch;
      }
    }
  }
  if (lane == 0) {
    block_loss[warp] = warp_loss;
    block_correct[warp] = warp_correct;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double l = 0.0;
    unsigned c = 0;
    for (int w = 0; w < kWarpsPerBlock; ++w) {
      l += block_loss[w];
      c += block_correct[w];
    }
    atomicAdd(loss_sum, l);
    atomicAdd(correct, static_cast<unsigned long long>(c));
  }
}

}  // namespace

KernelStatus BiasActivation(int m, int n, const float* x, const float* bias, Activation act,
                            float* y, const Stream& stream) {
  if (m < 0 || n < 0) return InvalidArgument("BiasActivation: negative size");
  if (m == 0 || n == 0) return KernelStatus::Ok();
  switch (act) {
    case Activation::kIdentity:
      return DispatchIndex<Activation::kIdentity>(m, n, x, bias, y, stream);
    case Activation::kRelu:
      return DispatchIndex<Activation::kRelu>(m, n, x, bias, y, stream);
    case Activation::kGelu:
      return DispatchIndex<Activation::kGelu>(m, n, x, bias, y, stream);
  }
  return InvalidArgument("BiasActivation: unknown activation");
}

size_t ColumnReduceWorkspaceFloats(int m, int n) {
  if (m <= 0 || n <= 0) return 0;
  return static_cast<size_t>(RowSplits(m, n)) * static_cast<size_t>(n);
}

KernelStatus BiasActivationBackward(int m, int n, Activation act, const float* dy,
                                    const float* x, const float* bias, const float* y, float* dz,
                                    float* db, float* workspace, const Stream& stream) {
  if (m < 0 || n < 0) return InvalidArgument("BiasActivationBackward: negative size");
  if (n == 0) return KernelStatus::Ok();
  if (m == 0) {
    // Empty batch: the bias gradient is zero.
    if (db == nullptr) return KernelStatus::Ok();
    return MemsetAsync(db, 0, sizeof(float) * static_cast<size_t>(n), stream);
  }
  if (db != nullptr && workspace == nullptr) {
    return InvalidArgument("BiasActivationBackward: a bias gradient needs a workspace");
  }
  if (db == nullptr) {
    const int64_t total = int64_t{m} * n;
    const unsigned grid = GridFor(total, kThreads);
    switch (act) {
      case Activation::kIdentity:
        if (dz == dy) return KernelStatus::Ok();
        return CopyAsync(dz, dy, sizeof(float) * static_cast<size_t>(total), stream);
      case Activation::kRelu:
        ActivationBackwardKernel<Activation::kRelu>
            <<<grid, kThreads, 0, stream.get()>>>(total, n, dy, x, bias, y, dz);
        return CheckLaunch("ActivationBackwardKernel<relu>");
      case Activation::kGelu:
        ActivationBackwardKernel<Activation::kGelu>
            <<<grid, kThreads, 0, stream.get()>>>(total, n, dy, x, bias, y, dz);
        return CheckLaunch("ActivationBackwardKernel<gelu>");
    }
    return InvalidArgument("BiasActivationBackward: unknown activation");
  }
  switch (act) {
    case Activation::kIdentity:
      if (dz != dy) {
        TESSERA_KERNEL_RETURN_IF_ERROR(
            CopyAsync(dz, dy, sizeof(float) * static_cast<size_t>(int64_t{m} * n), stream));
      }
      return LaunchColumnReduce<Activation::kIdentity, false>(m, n, dy, x, bias, y, dz, 1.0f,
                                                              0.0f, db, workspace, stream);
    case Activation::kRelu:
      return LaunchColumnReduce<Activation::kRelu, true>(m, n, dy, x, bias, y, dz, 1.0f, 0.0f,
                                                         db, workspace, stream);
    case Activation::kGelu:
      return LaunchColumnReduce<Activation::kGelu, true>(m, n, dy, x, bias, y, dz, 1.0f, 0.0f,
                                                         db, workspace, stream);
  }
  return InvalidArgument("BiasActivationBackward: unknown activation");
}

KernelStatus ColumnSum(int m, int n, float alpha, const float* x, float beta, float* out,
                       float* workspace, const Stream& stream) {
  if (m < 0 || n < 0) return InvalidArgument("ColumnSum: negative size");
  if (n == 0) return KernelStatus::Ok();
  if (m == 0) {
    // Sum of nothing: out = beta * out (beta == 0: zeros).
    if (beta == 0.0f) return MemsetAsync(out, 0, sizeof(float) * static_cast<size_t>(n), stream);
    FinishColumnSumKernel<<<GridFor(n, kThreads), kThreads, 0, stream.get()>>>(
        n, /*splits=*/0, nullptr, alpha, beta, out);
    return CheckLaunch("FinishColumnSumKernel");
  }
  if (workspace == nullptr) return InvalidArgument("ColumnSum: no workspace");
  return LaunchColumnReduce<Activation::kIdentity, false>(m, n, x, nullptr, nullptr, nullptr,
                                                          nullptr, alpha, beta, out, workspace,
                                                          stream);
}

KernelStatus SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch,
                                 int classes, float* dlogits, double* loss_sum,
                                 unsigned long long* correct, const Stream& stream) {
  if (batch < 0 || classes < 1) {
    return InvalidArgument("SoftmaxCrossEntropy: batch " + std::to_string(batch) + ", classes " +
                           std::to_string(classes));
  }
  if (batch == 0) return KernelStatus::Ok();
  const unsigned grid = GridFor(batch, kWarpsPerBlock);
  SoftmaxCrossEntropyKernel<<<grid, kWarpsPerBlock * 32, 0, stream.get()>>>(
      logits, labels, batch, classes, dlogits, loss_sum, correct);
  return CheckLaunch("SoftmaxCrossEntropyKernel");
}

}  // namespace tessera::kernels::cuda
