// Fused bias + activation, embeddings and optimizer updates on the CPU: the
// references of the CUDA kernels (kernels/cuda).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/cpu_kernels.h"

namespace tessera::kernels {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

inline float Gelu(float z) { return 0.5f * z * (1.0f + std::erf(z * kInvSqrt2)); }

// d/dz [z Phi(z)] = Phi(z) + z phi(z).
inline float GeluGrad(float z) {
  const float cdf = 0.5f * (1.0f + std::erf(z * kInvSqrt2));
  return cdf + z * kInvSqrt2Pi * std::exp(-0.5f * z * z);
}

}  // namespace

void BiasActivation(int m, int n, const float* x, const float* bias, Activation act, float* y) {
  switch (act) {
    case Activation::kIdentity:
      BiasAdd(m, n, x, bias, y);
      return;
    case Activation::kRelu:
      BiasRelu(m, n, x, bias, y);
      return;
    case Activation::kGelu:
      for (int i = 0; i < m; ++i) {
        const float* xr = x + static_cast<int64_t>(i) * n;
        float* yr = y + static_cast<int64_t>(i) * n;
        for (int j = 0; j < n; ++j) yr[j] = Gelu(xr[j] + bias[j]);
      }
      return;
  }
}

void BiasActivationBackward(int m, int n, Activation act, const float* dy, const float* x,
                            const float* bias, const float* y, float* dz, float* db) {
  const int64_t size = static_cast<int64_t>(m) * n;
  switch (act) {
    case Activation::kIdentity:
      if (dz != dy) std::memmove(dz, dy, sizeof(float) * static_cast<size_t>(size));
      break;
    case Activation::kRelu:
      ReluBackward(size, dy, y, dz);
      break;
    case Activation::kGelu:
      for (int i = 0; i < m; ++i) {
        const int64_t row = static_cast<int64_t>(i) * n;
        for (int j = 0; j < n; ++j) dz[row + j] = dy[row + j] * GeluGrad(x[row + j] + bias[j]);
      }
      break;
  }
  if (db != nullptr) ColumnSum(m, n, 1.0f, dz, 0.0f, db);
}

void EmbeddingGather(int64_t n, int dim, const float* table, int64_t /*table_rows*/,
                     const int64_t* ids, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, table + ids[i] * dim, sizeof(float) * static_cast<size_t>(dim));
  }
}

int64_t EmbeddingScatterAdd(int64_t n, int dim, const uint64_t* keys, const float* grads,
                            uint64_t* unique_keys, float* summed) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  // Stable: equal keys keep increasing i, the summation order of the contract.
  std::stable_sort(order.begin(), order.end(),
                   [keys](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  int64_t u = 0;
  for (int64_t s = 0; s < n;) {
    const uint64_t key = keys[order[s]];
    float* out = summed + u * dim;
    std::memcpy(out, grads + order[s] * dim, sizeof(float) * static_cast<size_t>(dim));
    int64_t e = s + 1;
    for (; e < n && keys[order[e]] == key; ++e) {
      const float* g = grads + order[e] * dim;
      for (int d = 0; d < dim; ++d) out[d] += g[d];
    }
    unique_keys[u++] = key;
    s = e;
  }
  return u;
}

void SgdUpdate(int64_t n, float lr, float momentum, bool nesterov, float weight_decay, float* w,
               const float* g, float* velocity) {
  const float mu = momentum, wd = weight_decay;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
  } else if (nesterov) {
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i] + wd * w[i];
      velocity[i] = mu * velocity[i] + gi;
      w[i] -= lr * (gi + mu * velocity[i]);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      velocity[i] = mu * velocity[i] + (g[i] + wd * w[i]);
      w[i] -= lr * velocity[i];
    }
  }
}

void AdamBiasCorrections(float beta1, float beta2, int64_t t, float* bc1, float* bc2) {
  *bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t)));
  *bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t)));
}

void AdamUpdate(int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                int64_t t, float* w, const float* g, float* m, float* v) {
  float bc1, bc2;
  AdamBiasCorrections(beta1, beta2, t, &bc1, &bc2);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + weight_decay * w[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    w[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
  }
}

}  // namespace tessera::kernels
