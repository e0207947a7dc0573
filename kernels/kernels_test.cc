// Every CPU kernel against a double-precision reference on seeded random
// inputs. Outputs that the contract says are write-only are NaN-poisoned first.

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_reference.h"
#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu_kernels.h"

namespace tessera::kernels {
namespace internal {

// Names the path in test listings instead of printing its bytes.
void PrintTo(GemmPath path, std::ostream* os) {
  *os << (path == GemmPath::kGeneric ? "generic" : "avx2+fma");
}

}  // namespace internal
namespace {

using internal::GemmPath;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kTolerance = 1e-5;

std::vector<float> RandomVector(size_t size, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

// norm(out - ref) / norm(ref); the caller guarantees ref is not all zeros.
// Any NaN in `out` makes the result NaN, which fails every `<` check.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    diff += d * d;
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

// The worst few elements, for the failure message.
std::string DescribeMismatch(const std::vector<float>& out, const std::vector<double>& ref) {
  std::ostringstream s;
  int shown = 0;
  for (size_t i = 0; i < ref.size() && shown < 8; ++i) {
    const double d = std::fabs(out[i] - ref[i]);
    if (!(d <= 1e-4 * (1.0 + std::fabs(ref[i])))) {
      s << "  [" << i << "] got " << out[i] << " want " << ref[i] << "\n";
      ++shown;
    }
  }
  return s.str();
}

struct GemmCase {
  bool trans_a, trans_b;
  int m, n, k;
  float alpha, beta;
  int pad;  // extra elements per row beyond the minimum leading dimension
};

std::string Name(const GemmCase& g) {
  std::ostringstream s;
  s << (g.trans_a ? "T" : "N") << (g.trans_b ? "T" : "N") << " m=" << g.m << " n=" << g.n
    << " k=" << g.k << " alpha=" << g.alpha << " beta=" << g.beta << " pad=" << g.pad;
  return s.str();
}

void CheckGemm(GemmPath path, const GemmCase& g, uint64_t seed) {
  SCOPED_TRACE(Name(g));
  const int a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  const int lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.n + g.pad;
  const std::vector<float> a = RandomVector(static_cast<size_t>(a_rows) * lda, seed);
  const std::vector<float> b = RandomVector(static_cast<size_t>(b_rows) * ldb, seed + 1);
  std::vector<float> c = RandomVector(static_cast<size_t>(g.m) * ldc, seed + 2);
  if (g.beta == 0.0f) std::fill(c.begin(), c.end(), kNaN);

  std::vector<double> ref(c.size());
  for (int i = 0; i < g.m; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i) * ldc + j;
      if (j >= g.n) {  // padding must be left alone
        ref[at] = c[at];
        continue;
      }
      double sum = 0.0;
      for (int p = 0; p < g.k; ++p) {
        const double av = g.trans_a ? a[static_cast<size_t>(p) * lda + i]
                                    : a[static_cast<size_t>(i) * lda + p];
        const double bv = g.trans_b ? b[static_cast<size_t>(j) * ldb + p]
                                    : b[static_cast<size_t>(p) * ldb + j];
        sum += av * bv;
      }
      ref[at] = g.alpha * sum + (g.beta == 0.0f ? 0.0 : g.beta * static_cast<double>(c[at]));
    }
  }
  internal::GemmOnPath(path, g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, a.data(), lda,
                       b.data(), ldb, g.beta, c.data(), ldc);
  // Padding columns of a NaN-poisoned C stay NaN: compare only the m x n part.
  std::vector<float> got;
  std::vector<double> want;
  for (int i = 0; i < g.m; ++i) {
    for (int j = 0; j < g.n; ++j) {
      got.push_back(c[static_cast<size_t>(i) * ldc + j]);
      want.push_back(ref[static_cast<size_t>(i) * ldc + j]);
    }
    for (int j = g.n; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i) * ldc + j;
      if (g.beta == 0.0f) {
        EXPECT_TRUE(std::isnan(c[at])) << "padding written at row " << i << " col " << j;
      } else {
        EXPECT_EQ(c[at], static_cast<float>(ref[at])) << "padding written";
      }
    }
  }
  const double err = RelativeError(got, want);
  EXPECT_LT(err, kTolerance) << DescribeMismatch(got, want);
}

std::vector<GemmPath> PathsToTest() {
  std::vector<GemmPath> paths = {GemmPath::kGeneric};
  if (internal::CpuHasAvx2Fma()) paths.push_back(GemmPath::kAvx2Fma);
  return paths;
}

class GemmTest : public ::testing::TestWithParam<GemmPath> {};

TEST_P(GemmTest, MatchesReferenceOnOddSizesAllTranspositions) {
  const int sizes[] = {1, 7, 33, 130};
  uint64_t seed = 1;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int m : sizes) {
        for (int n : sizes) {
          for (int k : sizes) {
            CheckGemm(GetParam(), {ta, tb, m, n, k, 1.0f, 0.0f, 0}, seed++);
          }
        }
      }
    }
  }
}

TEST_P(GemmTest, AlphaBetaAndLeadingDimensions) {
  uint64_t seed = 1000;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CheckGemm(GetParam(), {ta, tb, 13, 17, 19, 0.5f, 0.0f, 3}, seed++);
      CheckGemm(GetParam(), {ta, tb, 13, 17, 19, -1.5f, 1.0f, 5}, seed++);
      CheckGemm(GetParam(), {ta, tb, 13, 17, 19, 2.0f, 0.25f, 1}, seed++);
      CheckGemm(GetParam(), {ta, tb, 37, 5, 300, 1.0f, -1.0f, 2}, seed++);
    }
  }
}

// Shapes larger than one cache block in every dimension (kMc=120, kKc=256,
// kNr=16), including the MLP's, so the blocking loops run more than once.
TEST_P(GemmTest, MultiBlockShapes) {
  uint64_t seed = 2000;
  CheckGemm(GetParam(), {false, false, 64, 256, 784, 1.0f, 0.0f, 0}, seed++);
  CheckGemm(GetParam(), {false, true, 64, 784, 256, 1.0f, 0.0f, 0}, seed++);
  CheckGemm(GetParam(), {true, false, 784, 256, 64, 1.0f, 0.0f, 0}, seed++);
  CheckGemm(GetParam(), {true, true, 250, 131, 600, 0.75f, 0.5f, 4}, seed++);
  CheckGemm(GetParam(), {false, false, 241, 3100, 3, 1.0f, 1.0f, 0}, seed++);
}

TEST_P(GemmTest, ZeroDepthScalesCAndEmptyIsNoOp) {
  std::vector<float> c = RandomVector(12, 7);
  const std::vector<float> before = c;
  internal::GemmOnPath(GetParam(), false, false, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 4, 0.5f,
                       c.data(), 4);
  for (size_t i = 0; i < c.size(); ++i) EXPECT_FLOAT_EQ(c[i], 0.5f * before[i]);
  std::fill(c.begin(), c.end(), kNaN);
  internal::GemmOnPath(GetParam(), false, false, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 4, 0.0f,
                       c.data(), 4);
  for (float v : c) EXPECT_EQ(v, 0.0f);
  internal::GemmOnPath(GetParam(), false, false, 0, 4, 5, 1.0f, nullptr, 5, nullptr, 4, 0.0f,
                       nullptr, 4);
  internal::GemmOnPath(GetParam(), false, false, 3, 0, 5, 1.0f, nullptr, 5, nullptr, 1, 0.0f,
                       nullptr, 1);
}

INSTANTIATE_TEST_SUITE_P(Paths, GemmTest, ::testing::ValuesIn(PathsToTest()),
                         [](const ::testing::TestParamInfo<GemmPath>& info) {
                           return info.param == GemmPath::kGeneric ? std::string("Generic")
                                                                   : std::string("Avx2Fma");
                         });

TEST(GemmDispatchTest, PublicEntryPointMatchesReference) {
  const int m = 9, n = 21, k = 40;
  const std::vector<float> a = RandomVector(m * k, 11), b = RandomVector(k * n, 12);
  std::vector<float> c(m * n, kNaN);
  Gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  std::vector<double> ref(m * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) ref[i * n + j] += double(a[i * k + p]) * b[p * n + j];
  EXPECT_LT(RelativeError(c, ref), kTolerance);
  const std::string impl = GemmImplementation();
  EXPECT_TRUE(impl == "avx2+fma" || impl == "generic") << impl;
}

const int kRowCounts[] = {1, 7, 33, 130};
const int kColCounts[] = {1, 7, 33, 130, 300};

TEST(BiasTest, BiasAddAndBiasReluMatchReference) {
  uint64_t seed = 100;
  for (int m : kRowCounts) {
    for (int n : kColCounts) {
      SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n);
      const std::vector<float> x = RandomVector(size_t(m) * n, seed++);
      const std::vector<float> bias = RandomVector(n, seed++);
      std::vector<double> add_ref(x.size()), relu_ref(x.size());
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          const double v = double(x[size_t(i) * n + j]) + bias[j];
          add_ref[size_t(i) * n + j] = v;
          relu_ref[size_t(i) * n + j] = v > 0 ? v : 0;
        }
      }
      std::vector<float> y(x.size(), kNaN);
      BiasAdd(m, n, x.data(), bias.data(), y.data());
      EXPECT_LT(RelativeError(y, add_ref), kTolerance);

      std::fill(y.begin(), y.end(), kNaN);
      BiasRelu(m, n, x.data(), bias.data(), y.data());
      EXPECT_LT(RelativeError(y, relu_ref), kTolerance);

      std::vector<float> in_place = x;  // y == x is allowed
      BiasRelu(m, n, in_place.data(), bias.data(), in_place.data());
      EXPECT_LT(RelativeError(in_place, relu_ref), kTolerance);
    }
  }
}

TEST(ReluBackwardTest, MasksByOutputSign) {
  for (int64_t size : {1, 7, 33, 130, 1000}) {
    SCOPED_TRACE(size);
    const std::vector<float> dy = RandomVector(size, 200 + size);
    std::vector<float> y = RandomVector(size, 300 + size);
    for (float& v : y) v = v > 0 ? v : 0.0f;  // a ReLU output: zeros and positives
    std::vector<double> ref(size);
    for (int64_t i = 0; i < size; ++i) ref[i] = y[i] > 0 ? dy[i] : 0.0;
    if (size == 1) {  // make sure the reference is not all zeros
      y[0] = 1.0f;
      ref[0] = dy[0];
    }
    std::vector<float> dx(size, kNaN);
    ReluBackward(size, dy.data(), y.data(), dx.data());
    EXPECT_LT(RelativeError(dx, ref), kTolerance);
    for (int64_t i = 0; i < size; ++i) {
      if (y[i] <= 0) {
        EXPECT_EQ(dx[i], 0.0f);
      }
    }
  }
}

TEST(ColumnSumTest, MatchesReferenceWithAlphaAndBeta) {
  uint64_t seed = 400;
  for (int m : kRowCounts) {
    for (int n : kColCounts) {
      for (float beta : {0.0f, 0.5f}) {
        SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " beta=" << beta);
        const float alpha = 0.25f;
        const std::vector<float> x = RandomVector(size_t(m) * n, seed++);
        std::vector<float> out = RandomVector(n, seed++);
        std::vector<double> ref(n);
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int i = 0; i < m; ++i) s += x[size_t(i) * n + j];
          ref[j] = alpha * s + (beta == 0.0f ? 0.0 : beta * double(out[j]));
        }
        if (beta == 0.0f) std::fill(out.begin(), out.end(), kNaN);
        ColumnSum(m, n, alpha, x.data(), beta, out.data());
        EXPECT_LT(RelativeError(out, ref), kTolerance);
      }
    }
  }
}


TEST(SoftmaxCrossEntropyTest, FusedForwardBackwardMatchesReference) {
  uint64_t seed = 500;
  for (int batch : {1, 7, 33, 130}) {
    for (int classes : {2, 7, 10, 33}) {
      SCOPED_TRACE(::testing::Message() << "batch=" << batch << " classes=" << classes);
      const std::vector<float> logits = RandomVector(size_t(batch) * classes, seed++, -4, 4);
      std::mt19937_64 rng(seed++);
      std::vector<int32_t> labels(batch);
      for (int32_t& l : labels) l = static_cast<int32_t>(rng() % classes);
      const testing::SoftmaxRef ref = testing::RefSoftmax(logits, labels, batch, classes);

      std::vector<float> grad(logits.size(), kNaN);
      double loss = 1.0;  // accumulates
      int64_t correct = 2;
      SoftmaxCrossEntropy(logits.data(), labels.data(), batch, classes, grad.data(), &loss,
                          &correct);
      EXPECT_LT(RelativeError(grad, ref.grad), kTolerance);
      EXPECT_NEAR(loss - 1.0, ref.loss, 1e-5 * ref.loss);
      EXPECT_EQ(correct - 2, ref.correct);

      double eval_loss = 0;
      int64_t eval_correct = 0;
      SoftmaxCrossEntropyLoss(logits.data(), labels.data(), batch, classes, &eval_loss,
                              &eval_correct);
      EXPECT_NEAR(eval_loss, ref.loss, 1e-5 * ref.loss);
      EXPECT_EQ(eval_correct, ref.correct);

      std::vector<float> in_place = logits;  // dlogits == logits is allowed
      SoftmaxCrossEntropy(in_place.data(), labels.data(), batch, classes, in_place.data(),
                          nullptr, nullptr);
      EXPECT_LT(RelativeError(in_place, ref.grad), kTolerance);
    }
  }
}

TEST(SoftmaxCrossEntropyTest, StableForHugeLogits) {
  // Without the max subtraction exp(1000) overflows to Inf.
  const std::vector<float> logits = {1000.0f, 999.0f, -1000.0f, 0.0f, 3000.0f, 2990.0f};
  const std::vector<int32_t> labels = {1, 0};
  std::vector<float> grad(6, kNaN);
  double loss = 0;
  int64_t correct = 0;
  SoftmaxCrossEntropy(logits.data(), labels.data(), 2, 3, grad.data(), &loss, &correct);
  for (float g : grad) EXPECT_TRUE(std::isfinite(g));
  const testing::SoftmaxRef ref = testing::RefSoftmax(logits, labels, 2, 3);
  EXPECT_LT(RelativeError(grad, ref.grad), kTolerance);
  EXPECT_NEAR(loss, ref.loss, 1e-5 * ref.loss);
  EXPECT_EQ(correct, 0);
}

TEST(SoftmaxCrossEntropyTest, RowsOfGradientSumToZero) {
  const int batch = 16, classes = 10;
  const std::vector<float> logits = RandomVector(batch * classes, 77, -3, 3);
  std::vector<int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = (i * 7) % classes;
  std::vector<float> grad(logits.size(), kNaN);
  SoftmaxCrossEntropy(logits.data(), labels.data(), batch, classes, grad.data(), nullptr,
                      nullptr);
  for (int i = 0; i < batch; ++i) {
    double s = 0;
    for (int j = 0; j < classes; ++j) s += grad[i * classes + j];
    EXPECT_NEAR(s, 0.0, 1e-6);
    EXPECT_LT(grad[i * classes + labels[i]], 0.0f);
  }
}

}  // namespace
}  // namespace tessera::kernels
