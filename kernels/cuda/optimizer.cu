// Fused optimizer updates: one pass over w, g and the state, float4 when every
// pointer is 16-byte aligned (the tail and unaligned buffers go element-wise).

#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

enum class SgdKind { kPlain, kMomentum, kNesterov };

template <SgdKind K>
__device__ __forceinline__ void SgdStep(float lr, float mu, float wd, float& w, float g, float& v) {
  if constexpr (K == SgdKind::kPlain) {
    w -= lr * (g + wd * w);
  } else if constexpr (K == SgdKind::kNesterov) {
    const float gi = g + wd * w;
    v = mu * v + gi;
    w -= lr * (gi + mu * v);
  } else {
    v = mu * v + (g + wd * w);
    w -= lr * v;
  }
}

// Items are float4 groups when kVec, elements otherwise; the scalar kernel
// also runs the tail of the vector one (offset `first`).
template <SgdKind K, bool kVec>
__global__ void SgdKernel(int64_t items, int64_t first, float lr, float mu, float wd, float* w,
                          const float* g, float* v) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < items;
       i += int64_t{gridDim.x} * blockDim.x) {
    if constexpr (kVec) {
      float4 wv = reinterpret_cast<float4*>(w)[i];
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      float4 vv = make_float4(0.f, 0.f, 0.f, 0.f);
      if constexpr (K != SgdKind::kPlain) vv = reinterpret_cast<float4*>(v)[i];
      SgdStep<K>(lr, mu, wd, wv.x, gv.x, vv.x);
      SgdStep<K>(lr, mu, wd, wv.y, gv.y, vv.y);
      SgdStep<K>(lr, mu, wd, wv.z, gv.z, vv.z);
      SgdStep<K>(lr, mu, wd, wv.w, gv.w, vv.w);
      reinterpret_cast<float4*>(w)[i] = wv;
      if constexpr (K != SgdKind::kPlain) reinterpret_cast<float4*>(v)[i] = vv;
    } else {
      const int64_t e = first + i;
      float dummy = 0.f;
      float& vr = K == SgdKind::kPlain ? dummy : v[e];
      SgdStep<K>(lr, mu, wd, w[e], g[e], vr);
    }
  }
}

template <SgdKind K>
KernelStatus LaunchSgd(int64_t n, float lr, float mu, float wd, float* w, const float* g,
                       float* v, const Stream& stream) {
  int64_t vec = 0;
  if (Aligned16(w) && Aligned16(g) && (K == SgdKind::kPlain || Aligned16(v))) vec = n / 4;
  if (vec > 0) {
    SgdKernel<K, true><<<GridFor(vec, kThreads), kThreads, 0, stream.get()>>>(vec, 0, lr, mu, wd,
                                                                              w, g, v);
    TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("SgdKernel<float4>"));
  }
  const int64_t rest = n - 4 * vec;
  if (rest > 0) {
    SgdKernel<K, false><<<GridFor(rest, kThreads), kThreads, 0, stream.get()>>>(
        rest, 4 * vec, lr, mu, wd, w, g, v);
    TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("SgdKernel"));
  }
  return KernelStatus::Ok();
}

struct AdamParams {
  float lr, b1, b2, eps, wd, bc1, bc2;
};

__device__ __forceinline__ void AdamStep(const AdamParams& p, float& w, float g, float& m,
                                         float& v) {
  const float gi = g + p.wd * w;
  m = p.b1 * m + (1.0f - p.b1) * gi;
  v = p.b2 * v + (1.0f - p.b2) * gi * gi;
  w -= p.lr * (m / p.bc1) / (sqrtf(v / p.bc2) + p.eps);
}

template <bool kVec>
__global__ void AdamKernel(int64_t items, int64_t first, AdamParams p, float* w, const float* g,
                           float* m, float* v) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < items;
       i += int64_t{gridDim.x} * blockDim.x) {
    if constexpr (kVec) {
      float4 wv = reinterpret_cast<float4*>(w)[i];
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      float4 mv = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      AdamStep(p, wv.x, gv.x, mv.x, vv.x);
      AdamStep(p, wv.y, gv.y, mv.y, vv.y);
      AdamStep(p, wv.z, gv.z, mv.z, vv.z);
      AdamStep(p, wv.w, gv.w, mv.w, vv.w);
      reinterpret_cast<float4*>(w)[i] = wv;
      reinterpret_cast<float4*>(m)[i] = mv;
      reinterpret_cast<float4*>(v)[i] = vv;
    } else {
      const int64_t e = first + i;
      AdamStep(p, w[e], g[e], m[e], v[e]);
    }
  }
}

}  // namespace

KernelStatus SgdUpdate(int64_t n, float lr, float momentum, bool nesterov, float weight_decay,
                       float* w, const float* g, float* velocity, const Stream& stream) {
  if (n < 0) return InvalidArgument("SgdUpdate: negative size");
  if (n == 0) return KernelStatus::Ok();
  if (momentum == 0.0f) {
    return LaunchSgd<SgdKind::kPlain>(n, lr, momentum, weight_decay, w, g, velocity, stream);
  }
  if (velocity == nullptr) return InvalidArgument("SgdUpdate: momentum without a velocity buffer");
  if (nesterov) {
    return LaunchSgd<SgdKind::kNesterov>(n, lr, momentum, weight_decay, w, g, velocity, stream);
  }
  return LaunchSgd<SgdKind::kMomentum>(n, lr, momentum, weight_decay, w, g, velocity, stream);
}

KernelStatus AdamUpdate(int64_t n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t t, float* w, const float* g, float* m,
                        float* v, const Stream& stream) {
  if (n < 0 || t < 1) return InvalidArgument("AdamUpdate: negative size or step < 1");
  if (n == 0) return KernelStatus::Ok();
  AdamParams p{lr, beta1, beta2, eps, weight_decay, 0.0f, 0.0f};
  kernels::AdamBiasCorrections(beta1, beta2, t, &p.bc1, &p.bc2);
  int64_t vec = 0;
  if (Aligned16(w) && Aligned16(g) && Aligned16(m) && Aligned16(v)) vec = n / 4;
  if (vec > 0) {
    AdamKernel<true><<<GridFor(vec, kThreads), kThreads, 0, stream.get()>>>(vec, 0, p, w, g, m, v);
    TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("AdamKernel<float4>"));
  }
  const int64_t rest = n - 4 * vec;
  if (rest > 0) {
    AdamKernel<false><<<GridFor(rest, kThreads), kThreads, 0, stream.get()>>>(rest, 4 * vec, p, w,
                                                                              g, m, v);
    TESSERA_KERNEL_RETURN_IF_ERROR(CheckLaunch("AdamKernel"));
  }
  return KernelStatus::Ok();
}

}  // namespace tessera::kernels::cuda
