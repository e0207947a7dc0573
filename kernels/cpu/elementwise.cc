// Elementwise and row-wise kernels. These are memory-bound: plain loops the
// compiler vectorizes are as fast as hand-written SIMD here.

#include <cmath>
#include <cstddef>

#include "kernels/cpu_kernels.h"

namespace tessera::kernels {
namespace {

// One row of softmax cross-entropy. Returns the row's loss and whether its
// argmax is the label. When `dlogits` is not null, writes (softmax - onehot) *
// scale into it; it may alias `logits`, so every read of a logit happens before
// the write to the same index.
inline double SoftmaxRow(const float* logits, int32_t label, int classes, float scale,
                         float* dlogits, bool* hit) {
  int argmax = 0;
  float max = logits[0];
  for (int j = 1; j < classes; ++j) {
    if (logits[j] > max) {
      max = logits[j];
      argmax = j;
    }
  }
  const float shifted_label = logits[label] - max;
  double sum = 0.0;
  if (dlogits != nullptr) {
    for (int j = 0; j < classes; ++j) {
      const float e = std::exp(logits[j] - max);
      dlogits[j] = e;
      sum += e;
    }
    const float inv = static_cast<float>(scale / sum);
    for (int j = 0; j < classes; ++j) dlogits[j] *= inv;
    dlogits[label] -= scale;
  } else {
    for (int j = 0; j < classes; ++j) sum += std::exp(logits[j] - max);
  }
  *hit = argmax == label;
  // -log(e^shifted_label / sum); sum >= 1 because the max term is exp(0).
  return std::log(sum) - static_cast<double>(shifted_label);
}

}  // namespace

void BiasAdd(int m, int n, const float* x, const float* bias, float* y) {
  for (int i = 0; i < m; ++i) {
    const float* xr = x + static_cast<ptrdiff_t>(i) * n;
    float* yr = y + static_cast<ptrdiff_t>(i) * n;
    for (int j = 0; j < n; ++j) yr[j] = xr[j] + bias[j];
  }
}

void BiasRelu(int m, int n, const float* x, const float* bias, float* y) {
  for (int i = 0; i < m; ++i) {
    const float* xr = x + static_cast<ptrdiff_t>(i) * n;
    float* yr = y + static_cast<ptrdiff_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      const float v = xr[j] + bias[j];
      yr[j] = v > 0.0f ? v : 0.0f;
    }
  }
}

void ReluBackward(int64_t size, const float* dy, const float* y, float* dx) {
  for (int64_t i = 0; i < size; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void ColumnSum(int m, int n, float alpha, const float* x, float beta, float* out) {
  // Row by row keeps the reads contiguous; the double accumulators are per
  // column, in blocks small enough to stay on the stack.
  constexpr int kBlock = 256;
  double acc[kBlock];
  for (int j0 = 0; j0 < n; j0 += kBlock) {
    const int cols = n - j0 < kBlock ? n - j0 : kBlock;
    for (int j = 0; j < cols; ++j) acc[j] = 0.0;
    for (int i = 0; i < m; ++i) {
      const float* xr = x + static_cast<ptrdiff_t>(i) * n + j0;
      for (int j = 0; j < cols; ++j) acc[j] += xr[j];
    }
    for (int j = 0; j < cols; ++j) {
      const float sum = static_cast<float>(alpha * acc[j]);
      out[j0 + j] = beta == 0.0f ? sum : sum + beta * out[j0 + j];
    }
  }
}

void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch, int classes,
                         float* dlogits, double* loss_sum, int64_t* correct) {
  if (batch <= 0) return;
  const float scale = 1.0f / static_cast<float>(batch);
  double loss = 0.0;
  int64_t hits = 0;
  for (int i = 0; i < batch; ++i) {
    const ptrdiff_t offset = static_cast<ptrdiff_t>(i) * classes;
    bool hit = false;
    loss += SoftmaxRow(logits + offset, labels[i], classes, scale, dlogits + offset, &hit);
    hits += hit ? 1 : 0;
  }
  if (loss_sum != nullptr) *loss_sum += loss;
  if (correct != nullptr) *correct += hits;
}

void SoftmaxCrossEntropyLoss(const float* logits, const int32_t* labels, int batch, int classes,
                             double* loss_sum, int64_t* correct) {
  double loss = 0.0;
  int64_t hits = 0;
  for (int i = 0; i < batch; ++i) {
    bool hit = false;
    loss += SoftmaxRow(logits + static_cast<ptrdiff_t>(i) * classes, labels[i], classes, 0.0f,
                       nullptr, &hit);
    hits += hit ? 1 : 0;
  }
  if (loss_sum != nullptr) *loss_sum += loss;
  if (correct != nullptr) *correct += hits;
}

}  // namespace tessera::kernels
