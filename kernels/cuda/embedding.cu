// Embedding gather, and the sparse-gradient scatter-add with deduplication.
//
// Dedup is by sorting, not atomics: a stable radix sort keeps each key's rows
// in increasing row order, so the sums are deterministic and equal the CPU's
// bit for bit; it also yields the sorted unique-key list a sparse push sends;
// and hot keys (power-law ids) cause no atomic contention on one row.

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cmath>
#include <climits>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void GatherKernel(int64_t total, int dim, const float* table, int64_t rows,
                             const int64_t* ids, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / dim;
    const int d = static_cast<int>(i - r * dim);
    const int64_t id = ids[r];
    out[i] = (id >= 0 && id < rows) ? __ldg(table + id * dim + d) : NAN;
  }
}

__global__ void GatherKernel4(int64_t total4, int dim4, const float4* table, int64_t rows,
                              const int64_t* ids, float4* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total4;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / dim4;
    const int d = static_cast<int>(i - r * dim4);
    const int64_t id = __ldg(ids + r);
    out[i] = (id >= 0 && id < rows) ? __ldg(table + id * dim4 + d)
                                    : make_float4(NAN, NAN, NAN, NAN);
  }
}

__device__ __forceinline__ float Add(float a, float b) { return a + b; }
__device__ __forceinline__ float4 Add(const float4& a, const float4& b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

__global__ void IotaKernel(int n, int* out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    out[i] = i;
  }
}

// Lanes per unique key: the smallest power of two covering the row's vectors,
// at most a warp, so that a short row (dim 64 = 16 float4s) does not leave
// half a warp idle.
int LanesPerKey(int vectors) {
  int lanes = 1;
  while (lanes < vectors && lanes < 32) lanes *= 2;
  return lanes;
}

// A group of `lanes` threads per unique key j < *num_unique: summed[j] = the
// rows of its run, added in run order (the CPU's order). V floats per access;
// the row indices of the run are read kRunUnroll at a time so that their rows'
// loads are in flight together.
constexpr int kRunUnroll = 4;

template <typename T>
__global__ void SumRunsKernel(int vectors, int lanes, const T* grads, const int* sorted_rows,
                              const int* counts, const int* offsets, const int64_t* num_unique,
                              T* summed) {
  const int64_t u = *num_unique;
  const int64_t threads = int64_t{gridDim.x} * blockDim.x;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t / lanes < u; t += threads) {
    const int64_t j = t / lanes;
    const int lane = static_cast<int>(t % lanes);
    const int begin = offsets[j], count = counts[j];
    T* out = summed + j * vectors;
    for (int d = lane; d < vectors; d += lanes) {
      T s = grads[int64_t{sorted_rows[begin]} * vectors + d];
      int r = 1;
      for (; r + kRunUnroll <= count; r += kRunUnroll) {
        T v[kRunUnroll];
#pragma unroll
        for (int k = 0; k < kRunUnroll; ++k) {
          v[k] = grads[int64_t{sorted_rows[begin + r + k]} * vectors + d];
        }
#pragma unroll
        for (int k = 0; k < kRunUnroll; ++k) s = Add(s, v[k]);
      }
      for (; r < count; ++r) s = Add(s, grads[int64_t{sorted_rows[begin + r]} * vectors + d]);
      out[d] = s;
    }
  }
}

size_t AlignUp(size_t x) { return (x + 255) & ~size_t{255}; }

struct Layout {
  size_t sorted_keys, rows_in, rows_sorted, counts, offsets, temp, temp_bytes, total;
};

KernelStatus ComputeLayout(int n, Layout* l) {
  size_t sort_bytes = 0, rle_bytes = 0, scan_bytes = 0;
  TESSERA_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n));
  TESSERA_CUDA_RETURN_IF_ERROR(cub::DeviceRunLengthEncode::Encode(
      nullptr, rle_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<int*>(nullptr), static_cast<int64_t*>(nullptr), n));
  TESSERA_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      nullptr, scan_bytes, static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n));
  const size_t nn = static_cast<size_t>(n);
  size_t off = 0;
  l->sorted_keys = off;
  off += AlignUp(nn * sizeof(uint64_t));
  l->rows_in = off;
  off += AlignUp(nn * sizeof(int));
  l->rows_sorted = off;
  off += AlignUp(nn * sizeof(int));
  l->counts = off;
  off += AlignUp(nn * sizeof(int));
  l->offsets = off;
  off += AlignUp(nn * sizeof(int));
  l->temp = off;
  l->temp_bytes = std::max({sort_bytes, rle_bytes, scan_bytes, size_t{1}});
  off += AlignUp(l->temp_bytes);
  l->total = off;
  return KernelStatus::Ok();
}

}  // namespace

KernelStatus EmbeddingGather(int64_t n, int dim, const float* table, int64_t table_rows,
                             const int64_t* ids, float* out, const Stream& stream) {
  if (n < 0 || dim < 1 || table_rows < 0) return InvalidArgument("EmbeddingGather: bad size");
  if (n == 0) return KernelStatus::Ok();
  const int64_t total = n * dim;
  if (dim % 4 == 0 && (reinterpret_cast<uintptr_t>(table) & 15u) == 0 &&
      (reinterpret_cast<uintptr_t>(out) & 15u) == 0) {
    GatherKernel4<<<GridFor(total / 4, kThreads), kThreads, 0, stream.get()>>>(
        total / 4, dim / 4, reinterpret_cast<const float4*>(table), table_rows, ids,
        reinterpret_cast<float4*>(out));
    return CheckLaunch("GatherKernel4");
  }
  GatherKernel<<<GridFor(total, kThreads), kThreads, 0, stream.get()>>>(total, dim, table,
                                                                         table_rows, ids, out);
  return CheckLaunch("GatherKernel");
}

KernelStatus EmbeddingScatterAddWorkspaceBytes(int64_t n, size_t* bytes) {
  if (n < 0 || n > INT_MAX) return InvalidArgument("EmbeddingScatterAdd: n out of range");
  Layout l;
  TESSERA_KERNEL_RETURN_IF_ERROR(ComputeLayout(static_cast<int>(n), &l));
  *bytes = l.total;
  return KernelStatus::Ok();
}

KernelStatus EmbeddingScatterAdd(int64_t n, int dim, const uint64_t* keys, const float* grads,
                                 uint64_t* unique_keys, float* summed, int64_t* num_unique,
                                 void* workspace, size_t workspace_bytes, const Stream& stream) {
  if (n < 0 || n > INT_MAX || dim < 1) return InvalidArgument("EmbeddingScatterAdd: bad size");
  if (n == 0) return MemsetAsync(num_unique, 0, sizeof(int64_t), stream);
  const int count = static_cast<int>(n);
  Layout l;
  TESSERA_KERNEL_RETURN_IF_ERROR(ComputeLayout(count, &l));
  if (workspace == nullptr || workspace_bytes < l.total) {
    return InvalidArgument("EmbeddingScatterAdd: workspace of " + std::to_string(workspace_bytes) +
                           " bytes, need " + std::to_string(l.total));
  }
  char* ws = static_cast<char*>(workspace);
  auto* sorted_keys = reinterpret_cast<uint64_t*>(ws + l.sorted_keys);
  auto* rows_in = reinterpret_cast<int*>(ws + l.rows_in);
  auto* rows_sorted = reinterpret_cast<int*>(ws + l.rows_sorted);
  auto* counts = reinterpret_cast<int*>(ws + l.counts);
  auto* offsets = reinterpret_cast<int*>(ws + l.offsets);
  void* temp = ws + l.temp;
  size_t temp_bytes = l.temp_bytes;

  // Counts past the number of unique keys stay zero, so the scan below reads
  // only initialized memory.
  TESSERA_KERNEL_RETURN_IF_ERROR(
      MemsetAsync(counts, 0, sizeof(int) * static_cast<size_t>(count), stream));
  IotaKernel<<<GridFor(count, kThreads), kThreads, 0, stream.get()>>>(count, rows_in);
  TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("IotaKernel"));
  TESSERA_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      temp, temp_bytes, keys, sorted_keys, rows_in, rows_sorted, count, 0, 64, stream.get()));
  temp_bytes = l.temp_bytes;
  TESSERA_CUDA_RETURN_IF_ERROR(cub::DeviceRunLengthEncode::Encode(
      temp, temp_bytes, sorted_keys, unique_keys, counts, num_unique, count, stream.get()));
  temp_bytes = l.temp_bytes;
  // Scanning all n counts (zeros past *num_unique) avoids a device-to-host sync.
  TESSERA_CUDA_RETURN_IF_ERROR(
      cub::DeviceScan::ExclusiveSum(temp, temp_bytes, counts, offsets, count, stream.get()));
  // Threads for every key possibly unique; those past *num_unique exit at once.
  if (dim % 4 == 0 && (reinterpret_cast<uintptr_t>(grads) & 15u) == 0 &&
      (reinterpret_cast<uintptr_t>(summed) & 15u) == 0) {
    const int lanes = LanesPerKey(dim / 4);
    SumRunsKernel<float4><<<GridFor(int64_t{count} * lanes, kThreads), kThreads, 0,
                            stream.get()>>>(dim / 4, lanes, reinterpret_cast<const float4*>(grads),
                                            rows_sorted, counts, offsets, num_unique,
                                            reinterpret_cast<float4*>(summed));
    return CheckLaunch("SumRunsKernel<float4>");
  }
  const int lanes = LanesPerKey(dim);
  SumRunsKernel<float><<<GridFor(int64_t{count} * lanes, kThreads), kThreads, 0, stream.get()>>>(
      dim, lanes, grads, rows_sorted, counts, offsets, num_unique, summed);
  return CheckLaunch("SumRunsKernel<float>");
}

}  // namespace tessera::kernels::cuda
