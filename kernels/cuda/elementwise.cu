// Bias + activation (forward, and backward fused with the bias gradient),
// column sums and fused softmax cross-entropy.
//
// Forward bias+activation is a flat grid-stride loop over the m*n elements,
// float4 when n % 4 == 0 and the pointers are 16-byte aligned (the bias
// float4 then never straddles a row). The column reductions use 32 x 8 blocks:
// a warp reads 32 consecutive columns of a row (one 128-byte line), or 32
// float4s under the same alignment rule, blocks
// tile the columns and split the rows so that ~1024 blocks fill the GPU; each
// block writes one partial sum per column, and a second kernel adds the
// partials of each column in double, in split order (deterministic).

#include <algorithm>
#include <cmath>
#include <initializer_list>
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

// Column tiles of a row: 32 columns per block, or 128 when each thread moves 4.
int ColTiles(int n, int vec) { return (n + kColTile * vec - 1) / (kColTile * vec); }

int RowSplits(int m, int n, int vec) {
  const int col_tiles = ColTiles(n, vec);
  int splits = (1024 + col_tiles - 1) / col_tiles;
  const int max_splits = (m + kRowLanes - 1) / kRowLanes;  // at least 8 rows per split
  if (splits > max_splits) splits = max_splits;
  if (splits < 1) splits = 1;
  return splits;
}

// The vector width of the column reductions: 4 when every row starts 16-byte
// aligned in each array (n % 4 == 0 and aligned bases), else 1. Absent arrays
// (nullptr) do not count.
int ColumnVec(int n, std::initializer_list<const void*> arrays) {
  if (n % 4 != 0) return 1;
  for (const void* p : arrays) {
    if (p != nullptr && !Aligned16(p)) return 1;
  }
  return 4;
}

template <int V>
struct VecOf;
template <>
struct VecOf<1> {
  using T = float;
  __device__ static float Get(const float& v, int) { return v; }
  __device__ static void Set(float& v, int, float x) { v = x; }
};
template <>
struct VecOf<4> {
  using T = float4;
  __device__ static float Get(const float4& v, int k) {
    return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
  }
  __device__ static void Set(float4& v, int k, float x) {
    if (k == 0) v.x = x; else if (k == 1) v.y = x; else if (k == 2) v.z = x; else v.w = x;
  }
};

// dz = dy * act'(.) for one vector of V columns.
template <Activation A, int V>
__device__ __forceinline__ typename VecOf<V>::T DzOf(const typename VecOf<V>::T& g,
                                                      const typename VecOf<V>::T& xv,
                                                      const typename VecOf<V>::T& yv,
                                                      const typename VecOf<V>::T& b) {
  using VT = VecOf<V>;
  typename VT::T out = g;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    float e = VT::Get(g, k);
    if constexpr (A == Activation::kRelu) {
      e = VT::Get(yv, k) > 0.0f ? e : 0.0f;
    } else if constexpr (A == Activation::kGelu) {
      e *= GeluGrad(VT::Get(xv, k) + VT::Get(b, k));
    }
    VT::Set(out, k, e);
  }
  return out;
}

constexpr int kRowUnroll = 4;  // rows whose loads a thread issues before using any

// Partial column sums of dz = dy * act'(.) over one row split; writes dz when
// kWriteDz. partial[split][col]. Each thread owns V adjacent columns and walks
// its rows kRowUnroll at a time, loading all of them before computing, so
// several loads are in flight per thread (dz may alias dy: each element is
// read before the same thread writes it).
template <Activation A, bool kWriteDz, int V>
__global__ void ColumnReduceKernel(int m, int n, int rows_per_split, const float* dy,
                                   const float* x, const float* bias, const float* y, float* dz,
                                   float* partial) {
  using VT = VecOf<V>;
  using T = typename VT::T;
  __shared__ float sums[kRowLanes][kColTile * V + 1];
  const int col = (blockIdx.x * kColTile + threadIdx.x) * V;
  const int split = blockIdx.y;
  const int row_begin = split * rows_per_split;
  const int row_end = min(m, row_begin + rows_per_split);
  const int64_t stride = int64_t{n} / V;  // in units of T
  float acc[V] = {};
  if (col < n) {
    T b{};
    if constexpr (A == Activation::kGelu) b = reinterpret_cast<const T*>(bias)[col / V];
    const T* dyv = reinterpret_cast<const T*>(dy) + col / V;
    const T* xv = A == Activation::kGelu ? reinterpret_cast<const T*>(x) + col / V : nullptr;
    const T* yv = A == Activation::kRelu ? reinterpret_cast<const T*>(y) + col / V : nullptr;
    T* dzv = kWriteDz ? reinterpret_cast<T*>(dz) + col / V : nullptr;
    int r = row_begin + threadIdx.y;
    for (; r + (kRowUnroll - 1) * kRowLanes < row_end; r += kRowUnroll * kRowLanes) {
      T g[kRowUnroll], a[kRowUnroll];
#pragma unroll
      for (int u = 0; u < kRowUnroll; ++u) {
        const int64_t i = int64_t{r + u * kRowLanes} * stride;
        g[u] = dyv[i];
        if constexpr (A == Activation::kRelu) a[u] = yv[i];
        if constexpr (A == Activation::kGelu) a[u] = xv[i];
      }
#pragma unroll
      for (int u = 0; u < kRowUnroll; ++u) {
        const T d = DzOf<A, V>(g[u], a[u], a[u], b);
        if constexpr (kWriteDz) dzv[int64_t{r + u * kRowLanes} * stride] = d;
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += VT::Get(d, k);
      }
    }
    for (; r < row_end; r += kRowLanes) {
      const int64_t i = int64_t{r} * stride;
      T a{};
      if constexpr (A == Activation::kRelu) a = yv[i];
      if constexpr (A == Activation::kGelu) a = xv[i];
      const T d = DzOf<A, V>(dyv[i], a, a, b);
      if constexpr (kWriteDz) dzv[i] = d;
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += VT::Get(d, k);
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) sums[threadIdx.y][threadIdx.x * V + k] = acc[k];
  __syncthreads();
  // Each of the block's first kColTile * V threads finishes one column.
  const int t = threadIdx.y * kColTile + threadIdx.x;
  const int out_col = blockIdx.x * kColTile * V + t;
  if (t < kColTile * V && out_col < n) {
    float total = 0.0f;
    for (int k = 0; k < kRowLanes; ++k) total += sums[k][t];
    partial[int64_t{split} * n + out_col] = total;
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
  const int vec = ColumnVec(n, {dy, A == Activation::kGelu ? x : nullptr,
                                A == Activation::kGelu ? bias : nullptr,
                                A == Activation::kRelu ? y : nullptr, kWriteDz ? dz : nullptr});
  const int splits = RowSplits(m, n, vec);
  const int rows_per_split = (m + splits - 1) / splits;
  const dim3 grid(ColTiles(n, vec), splits);
  const dim3 block(kColTile, kRowLanes);
  if (vec == 4) {
    ColumnReduceKernel<A, kWriteDz, 4><<<grid, block, 0, stream.get()>>>(
        m, n, rows_per_split, dy, x, bias, y, dz, workspace);
  } else {
    ColumnReduceKernel<A, kWriteDz, 1><<<grid, block, 0, stream.get()>>>(
        m, n, rows_per_split, dy, x, bias, y, dz, workspace);
  }
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

// Adds a warp's row result into the block's totals, then one atomic per block.
struct XentTotals {
  double loss = 0.0;
  unsigned correct = 0;
};

__device__ void FlushXentTotals(const XentTotals& t, double* loss_sum,
                                unsigned long long* correct) {
  __shared__ double block_loss[kWarpsPerBlock];
  __shared__ unsigned block_correct[kWarpsPerBlock];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    block_loss[warp] = t.loss;
    block_correct[warp] = t.correct;
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

// Rows of up to kPerLane * 32 * kWarpsPerRow classes: each thread loads its
// kPerLane logits of the row at once (all loads in flight together), so the
// row is read from memory once and dlogits written once, with one exp per
// logit. Thread t of a row's group holds classes t, t + group size, ...: every
// load and store of a warp is one coalesced run. kPerLane stays at most 16, so
// that the kernel fits 64 registers and 4 blocks of 256 threads (half the SM's
// threads) are resident; longer rows take more warps, which combine their max
// and sum through shared memory. (One warp holding 32 per lane needed 96
// registers: a quarter of the SM's threads, and 57% of copy bandwidth.)
template <int kPerLane, int kWarpsPerRow>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 4)
    SoftmaxCrossEntropyRowsInRegisters(const float* logits, const int32_t* labels,
                                                   int batch, int classes, float* dlogits,
                                                   double* loss_sum,
                                                   unsigned long long* correct) {
  static_assert(kWarpsPerBlock % kWarpsPerRow == 0, "a block holds whole rows");
  constexpr int kRowsPerBlock = kWarpsPerBlock / kWarpsPerRow;
  constexpr int kRowThreads = 32 * kWarpsPerRow;
  __shared__ float s_max[kWarpsPerBlock], s_sum[kWarpsPerBlock], s_zl[kWarpsPerBlock];
  __shared__ int s_arg[kWarpsPerBlock];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = warp / kWarpsPerRow, first_warp = group * kWarpsPerRow;
  const int t = (warp % kWarpsPerRow) * 32 + lane;  // thread within the row's group
  const float inv_batch = 1.0f / static_cast<float>(batch);
  XentTotals totals;
  // The loop runs the same number of times in every warp of the block, so the
  // barriers inside it are reached by all threads.
  for (int base = blockIdx.x * kRowsPerBlock; base < batch; base += gridDim.x * kRowsPerBlock) {
    const int row = base + group;
    const bool active = row < batch;
    const float* z = logits + int64_t{row} * classes;
    const int label = active ? labels[row] : -1;
    float v[kPerLane];
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = t + kRowThreads * k;
      v[k] = active && j < classes ? z[j] : -INFINITY;
    }
    // Max, and the first index holding it (classes grow with k within a thread).
    float mx = -INFINITY;
    int arg = classes;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      if (v[k] > mx) {
        mx = v[k];
        arg = t + kRowThreads * k;
      }
    }
    for (int off = 16; off > 0; off /= 2) {
      const float o_mx = __shfl_xor_sync(0xffffffffu, mx, off);
      const int o_arg = __shfl_xor_sync(0xffffffffu, arg, off);
      if (o_mx > mx || (o_mx == mx && o_arg < arg)) {
        mx = o_mx;
        arg = o_arg;
      }
    }
    if constexpr (kWarpsPerRow > 1) {
      if (lane == 0) {
        s_max[warp] = mx;
        s_arg[warp] = arg;
      }
      __syncthreads();
      for (int w = first_warp; w < first_warp + kWarpsPerRow; ++w) {
        if (s_max[w] > mx || (s_max[w] == mx && s_arg[w] < arg)) {
          mx = s_max[w];
          arg = s_arg[w];
        }
      }
    }
    float sum = 0.0f;
    float z_label = 0.0f;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = t + kRowThreads * k;
      if (j == label) z_label = v[k];
      v[k] = j < classes ? expf(v[k] - mx) : 0.0f;
      sum += v[k];
    }
    for (int off = 16; off > 0; off /= 2) {
      sum += __shfl_xor_sync(0xffffffffu, sum, off);
      z_label += __shfl_xor_sync(0xffffffffu, z_label, off);  // one thread holds it
    }
    if constexpr (kWarpsPerRow > 1) {
      if (lane == 0) {
        s_sum[warp] = sum;
        s_zl[warp] = z_label;
      }
      __syncthreads();
      sum = 0.0f;
      z_label = 0.0f;
      for (int w = first_warp; w < first_warp + kWarpsPerRow; ++w) {
        sum += s_sum[w];
        z_label += s_zl[w];
      }
      __syncthreads();  // shared slots are reused by the next row
    }
    if (!active) continue;
    const bool valid = label >= 0 && label < classes;
    if (t == 0) {
      totals.loss += valid ? -(static_cast<double>(z_label) - mx - log(static_cast<double>(sum)))
                           : static_cast<double>(NAN);
      totals.correct += (valid && arg == label) ? 1u : 0u;
    }
    if (dlogits != nullptr) {
      float* d = dlogits + int64_t{row} * classes;
      const float inv_sum = 1.0f / sum;
#pragma unroll
      for (int k = 0; k < kPerLane; ++k) {
        const int j = t + kRowThreads * k;
        if (j < classes) d[j] = (v[k] * inv_sum - (j == label ? 1.0f : 0.0f)) * inv_batch;
      }
    }
  }
  FlushXentTotals(totals, loss_sum, correct);
}

// Rows of any length: a running max and sum in one pass over the row, then a
// second pass (from cache) writing dlogits.
__global__ void SoftmaxCrossEntropyKernel(const float* logits, const int32_t* labels, int batch,
                                          int classes, float* dlogits, double* loss_sum,
                                          unsigned long long* correct) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float inv_batch = 1.0f / static_cast<float>(batch);
  XentTotals totals;
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
      totals.loss += -(static_cast<double>(z_label) - mx - log(static_cast<double>(sum)));
      totals.correct += (valid && arg == label) ? 1u : 0u;
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
  FlushXentTotals(totals, loss_sum, correct);
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
  // Enough for either vector width (scalar columns split the rows more).
  return static_cast<size_t>(std::max(RowSplits(m, n, 1), RowSplits(m, n, 4))) *
         static_cast<size_t>(n);
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
  const int threads = kWarpsPerBlock * 32;
#define TESSERA_XENT_ROWS_IN_REGISTERS(K, W)                                           \
  if (classes <= (K) * 32 * (W)) {                                                     \
    const unsigned blocks = GridFor(batch, kWarpsPerBlock / (W));                      \
    SoftmaxCrossEntropyRowsInRegisters<K, W><<<blocks, threads, 0, stream.get()>>>(    \
        logits, labels, batch, classes, dlogits, loss_sum, correct);                   \
    return CheckLaunch("SoftmaxCrossEntropyRowsInRegisters<" #K ", " #W ">");          \
  }
  TESSERA_XENT_ROWS_IN_REGISTERS(1, 1)
  TESSERA_XENT_ROWS_IN_REGISTERS(4, 1)
  TESSERA_XENT_ROWS_IN_REGISTERS(8, 1)
  TESSERA_XENT_ROWS_IN_REGISTERS(16, 1)
  TESSERA_XENT_ROWS_IN_REGISTERS(16, 2)
  TESSERA_XENT_ROWS_IN_REGISTERS(16, 4)
  TESSERA_XENT_ROWS_IN_REGISTERS(16, 8)
#undef TESSERA_XENT_ROWS_IN_REGISTERS
  SoftmaxCrossEntropyKernel<<<grid, threads, 0, stream.get()>>>(logits, labels, batch, classes,
                                                                dlogits, loss_sum, correct);
  return CheckLaunch("SoftmaxCrossEntropyKernel");
}

}  // namespace tessera::kernels::cuda
