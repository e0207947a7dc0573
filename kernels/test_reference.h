#ifndef TESSERA_KERNELS_TEST_REFERENCE_H_
#define TESSERA_KERNELS_TEST_REFERENCE_H_

// Float64 references and helpers shared by the kernel tests (CPU and CUDA).
// Tests only: seeded random inputs and norm(out - ref) / norm(ref).

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu_kernels.h"

namespace tessera::kernels::testing {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

inline std::vector<float> RandomVector(size_t size, uint64_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

// norm(out - ref) / norm(ref). NaN anywhere in out gives NaN (fails `<`).
// A zero reference norm gives +Inf unless out is exactly zero too.
inline double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    diff += d * d;
    norm += ref[i] * ref[i];
  }
  if (norm == 0.0) return diff == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(diff) / std::sqrt(norm);
}

// The first few elements that differ by more than `tol` relative, for messages.
inline std::string Mismatches(const std::vector<float>& out, const std::vector<double>& ref,
                              double tol = 1e-4) {
  std::ostringstream s;
  int shown = 0;
  for (size_t i = 0; i < ref.size() && shown < 8; ++i) {
    const double d = std::fabs(out[i] - ref[i]);
    if (!(d <= tol * (1.0 + std::fabs(ref[i])))) {
      s << "  [" << i << "] got " << out[i] << " want " << ref[i] << "\n";
      ++shown;
    }
  }
  return s.str();
}

inline std::vector<double> RefGemm(bool ta, bool tb, int m, int n, int k, float alpha,
                                   const std::vector<float>& a, int lda,
                                   const std::vector<float>& b, int ldb, float beta,
                                   const std::vector<float>& c, int ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0.0;
      for (int p = 0; p < k; ++p) {
        const double av = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
        const double bv = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
        s += av * bv;
      }
      const double old = beta == 0.0f ? 0.0 : beta * double(c[size_t(i) * ldc + j]);
      out[size_t(i) * ldc + j] = alpha * s + old;
    }
  }
  return out;
}

inline double RefAct(Activation act, double z) {
  switch (act) {
    case Activation::kIdentity:
      return z;
    case Activation::kRelu:
      return z > 0 ? z : 0.0;
    case Activation::kGelu:
      return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
  }
  return 0.0;
}

inline double RefActGrad(Activation act, double z) {
  switch (act) {
    case Activation::kIdentity:
      return 1.0;
    case Activation::kRelu:
      return z > 0 ? 1.0 : 0.0;
    case Activation::kGelu:
      return 0.5 * (1.0 + std::erf(z / std::sqrt(2.0))) +
             z * std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
  }
  return 0.0;
}

struct SoftmaxRef {
  std::vector<double> grad;
  double loss = 0;
  int64_t correct = 0;
};

inline SoftmaxRef RefSoftmax(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                             int batch, int classes) {
  SoftmaxRef r;
  r.grad.resize(logits.size());
  for (int i = 0; i < batch; ++i) {
    const float* row = logits.data() + size_t(i) * classes;
    double max = row[0];
    int argmax = 0;
    for (int j = 1; j < classes; ++j) {
      if (row[j] > max) {
        max = row[j];
        argmax = j;
      }
    }
    double sum = 0;
    for (int j = 0; j < classes; ++j) sum += std::exp(double(row[j]) - max);
    for (int j = 0; j < classes; ++j) {
      const double p = std::exp(double(row[j]) - max) / sum;
      r.grad[size_t(i) * classes + j] = (p - (j == labels[i] ? 1.0 : 0.0)) / batch;
    }
    r.loss += -(double(row[labels[i]]) - max - std::log(sum));
    r.correct += argmax == labels[i] ? 1 : 0;
  }
  return r;
}

// Keys with duplicates: n keys drawn from `distinct` values spread over 64 bits.
inline std::vector<uint64_t> RandomKeys(size_t n, int distinct, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> pool(distinct);
  for (uint64_t& k : pool) k = rng();
  std::uniform_int_distribution<int> pick(0, distinct - 1);
  std::vector<uint64_t> keys(n);
  for (uint64_t& k : keys) k = pool[pick(rng)];
  return keys;
}

// Sums per distinct key, ascending keys, in double.
inline void RefScatterAdd(const std::vector<uint64_t>& keys, const std::vector<float>& grads,
                          int dim, std::vector<uint64_t>* unique, std::vector<double>* sums) {
  std::map<uint64_t, std::vector<double>> acc;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<double>& row = acc[keys[i]];
    row.resize(dim, 0.0);
    for (int d = 0; d < dim; ++d) row[d] += grads[i * dim + d];
  }
  unique->clear();
  sums->clear();
  for (const auto& [k, row] : acc) {
    unique->push_back(k);
    sums->insert(sums->end(), row.begin(), row.end());
  }
}

// One optimizer step in double: w, v (or m, v) updated in place.
struct OptState {
  std::vector<double> w, s0, s1;
};

inline void RefSgd(OptState* st, const std::vector<float>& g, double lr, double mu, bool nesterov,
                   double wd) {
  for (size_t i = 0; i < g.size(); ++i) {
    const double gi = g[i] + wd * st->w[i];
    if (mu == 0.0) {
      st->w[i] -= lr * gi;
    } else {
      st->s0[i] = mu * st->s0[i] + gi;
      st->w[i] -= nesterov ? lr * (gi + mu * st->s0[i]) : lr * st->s0[i];
    }
  }
}

inline void RefAdam(OptState* st, const std::vector<float>& g, double lr, double b1, double b2,
                    double eps, double wd, int64_t t) {
  const double bc1 = 1.0 - std::pow(b1, double(t)), bc2 = 1.0 - std::pow(b2, double(t));
  for (size_t i = 0; i < g.size(); ++i) {
    const double gi = g[i] + wd * st->w[i];
    st->s0[i] = b1 * st->s0[i] + (1.0 - b1) * gi;
    st->s1[i] = b2 * st->s1[i] + (1.0 - b2) * gi * gi;
    st->w[i] -= lr * (st->s0[i] / bc1) / (std::sqrt(st->s1[i] / bc2) + eps);
  }
}

}  // namespace tessera::kernels::testing

#endif  // TESSERA_KERNELS_TEST_REFERENCE_H_
