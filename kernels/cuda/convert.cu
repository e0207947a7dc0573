// fp32 <-> fp16 / bf16 with the bit-exact scalar code of kernels/convert.h.
// Each thread converts 4 values: one float4 and one 8-byte store (or load) of
// four 16-bit values, when both buffers are aligned; the tail goes one by one.

#include <cstdint>

#include "kernels/convert.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

struct ToHalf {
  __device__ uint16_t operator()(float f) const { return FloatToHalfBits(f); }
};
struct ToBf16 {
  __device__ uint16_t operator()(float f) const { return FloatToBf16Bits(f); }
};
struct FromHalf {
  __device__ float operator()(uint16_t h) const { return HalfBitsToFloat(h); }
};
struct FromBf16 {
  __device__ float operator()(uint16_t b) const { return Bf16BitsToFloat(b); }
};

template <typename Op>
__global__ void NarrowKernel(int64_t n, const float* in, uint16_t* out, bool vec) {
  const int64_t groups = (n + 3) / 4;
  Op op;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < groups;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t e = 4 * i;
    if (vec && e + 4 <= n) {
      const float4 v = reinterpret_cast<const float4*>(in)[i];
      uint2 packed;
      packed.x = uint32_t{op(v.x)} | (uint32_t{op(v.y)} << 16);
      packed.y = uint32_t{op(v.z)} | (uint32_t{op(v.w)} << 16);
      reinterpret_cast<uint2*>(out)[i] = packed;
    } else {
      for (int64_t k = e; k < n && k < e + 4; ++k) out[k] = op(in[k]);
    }
  }
}

template <typename Op>
__global__ void WidenKernel(int64_t n, const uint16_t* in, float* out, bool vec) {
  const int64_t groups = (n + 3) / 4;
  Op op;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < groups;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t e = 4 * i;
    if (vec && e + 4 <= n) {
      const uint2 packed = reinterpret_cast<const uint2*>(in)[i];
      reinterpret_cast<float4*>(out)[i] =
          make_float4(op(static_cast<uint16_t>(packed.x & 0xFFFFu)),
                      op(static_cast<uint16_t>(packed.x >> 16)),
                      op(static_cast<uint16_t>(packed.y & 0xFFFFu)),
                      op(static_cast<uint16_t>(packed.y >> 16)));
    } else {
      for (int64_t k = e; k < n && k < e + 4; ++k) out[k] = op(in[k]);
    }
  }
}

bool Aligned(const void* p, unsigned bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

template <typename Op>
KernelStatus Narrow(const float* in, int64_t n, uint16_t* out, const Stream& stream,
                    const char* name) {
  if (n < 0) return InvalidArgument(std::string(name) + ": negative size");
  if (n == 0) return KernelStatus::Ok();
  const bool vec = Aligned(in, 16) && Aligned(out, 8);
  NarrowKernel<Op><<<GridFor((n + 3) / 4, kThreads), kThreads, 0, stream.get()>>>(n, in, out, vec);
  return CheckLaunch(name);
}

template <typename Op>
KernelStatus Widen(const uint16_t* in, int64_t n, float* out, const Stream& stream,
                   const char* name) {
  if (n < 0) return InvalidArgument(std::string(name) + ": negative size");
  if (n == 0) return KernelStatus::Ok();
  const bool vec = Aligned(in, 8) && Aligned(out, 16);
  WidenKernel<Op><<<GridFor((n + 3) / 4, kThreads), kThreads, 0, stream.get()>>>(n, in, out, vec);
  return CheckLaunch(name);
}

}  // namespace

KernelStatus FloatToHalf(const float* in, int64_t n, uint16_t* out, const Stream& stream) {
  return Narrow<ToHalf>(in, n, out, stream, "FloatToHalf");
}
KernelStatus HalfToFloat(const uint16_t* in, int64_t n, float* out, const Stream& stream) {
  return Widen<FromHalf>(in, n, out, stream, "HalfToFloat");
}
KernelStatus FloatToBf16(const float* in, int64_t n, uint16_t* out, const Stream& stream) {
  return Narrow<ToBf16>(in, n, out, stream, "FloatToBf16");
}
KernelStatus Bf16ToFloat(const uint16_t* in, int64_t n, float* out, const Stream& stream) {
  return Widen<FromBf16>(in, n, out, stream, "Bf16ToFloat");
}

}  // namespace tessera::kernels::cuda
