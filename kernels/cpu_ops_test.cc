// The CPU references added for the CUDA kernels (bias + activation, embeddings,
// optimizer updates) against float64 references on seeded random inputs.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_kernels.h"
#include "kernels/test_reference.h"

namespace tessera::kernels {
namespace {

using testing::kNaN;
using testing::RandomVector;
using testing::RelativeError;

constexpr double kTolerance = 1e-5;
const Activation kActivations[] = {Activation::kIdentity, Activation::kRelu, Activation::kGelu};

TEST(BiasActivationTest, ForwardMatchesReferenceForEveryActivation) {
  uint64_t seed = 1000;
  for (Activation act : kActivations) {
    for (int m : {1, 7, 33, 130}) {
      for (int n : {1, 5, 64, 301}) {
        SCOPED_TRACE(::testing::Message() << "act=" << int(act) << " m=" << m << " n=" << n);
        const std::vector<float> x = RandomVector(size_t(m) * n, seed++, -3.0f, 3.0f);
        const std::vector<float> bias = RandomVector(n, seed++);
        std::vector<double> ref(x.size());
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j)
            ref[size_t(i) * n + j] = testing::RefAct(act, double(x[size_t(i) * n + j]) + bias[j]);
        if (act == Activation::kRelu && m * n == 1 && ref[0] == 0.0) continue;  // all-zero ref
        std::vector<float> y(x.size(), kNaN);
        BiasActivation(m, n, x.data(), bias.data(), act, y.data());
        EXPECT_LT(RelativeError(y, ref), kTolerance) << testing::Mismatches(y, ref);
      }
    }
  }
}

TEST(BiasActivationTest, BackwardAndBiasGradientMatchReference) {
  uint64_t seed = 2000;
  for (Activation act : kActivations) {
    for (int m : {1, 7, 33, 130}) {
      for (int n : {1, 5, 64, 301}) {
        SCOPED_TRACE(::testing::Message() << "act=" << int(act) << " m=" << m << " n=" << n);
        const std::vector<float> x = RandomVector(size_t(m) * n, seed++, -3.0f, 3.0f);
        const std::vector<float> bias = RandomVector(n, seed++);
        const std::vector<float> dy = RandomVector(x.size(), seed++);
        std::vector<float> y(x.size());
        BiasActivation(m, n, x.data(), bias.data(), act, y.data());
        std::vector<double> dz_ref(x.size()), db_ref(n, 0.0);
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            const size_t e = size_t(i) * n + j;
            dz_ref[e] = dy[e] * testing::RefActGrad(act, double(x[e]) + bias[j]);
            db_ref[j] += dz_ref[e];
          }
        }
        if (std::all_of(dz_ref.begin(), dz_ref.end(), [](double v) { return v == 0.0; })) continue;
        std::vector<float> dz(x.size(), kNaN), db(n, kNaN);
        BiasActivationBackward(m, n, act, dy.data(), x.data(), bias.data(), y.data(), dz.data(),
                               db.data());
        EXPECT_LT(RelativeError(dz, dz_ref), kTolerance) << testing::Mismatches(dz, dz_ref);
        EXPECT_LT(RelativeError(db, db_ref), kTolerance) << testing::Mismatches(db, db_ref);

        // In place, without the bias gradient.
        std::vector<float> in_place = dy;
        BiasActivationBackward(m, n, act, in_place.data(), x.data(), bias.data(), y.data(),
                               in_place.data(), nullptr);
        EXPECT_LT(RelativeError(in_place, dz_ref), kTolerance);
      }
    }
  }
}

TEST(BiasActivationTest, GeluGradientMatchesFiniteDifferences) {
  const std::vector<float> zs = {-4.0f, -1.5f, -0.3f, 0.0f, 0.2f, 1.0f, 2.5f};
  const float zero = 0.0f;
  for (float z : zs) {
    const double h = 1e-3;
    const double fd =
        (testing::RefAct(Activation::kGelu, z + h) - testing::RefAct(Activation::kGelu, z - h)) /
        (2 * h);
    float dy = 1.0f, dz = kNaN, y = kNaN;
    BiasActivation(1, 1, &z, &zero, Activation::kGelu, &y);
    BiasActivationBackward(1, 1, Activation::kGelu, &dy, &z, &zero, &y, &dz, nullptr);
    EXPECT_NEAR(dz, fd, 1e-4) << "z=" << z;
    EXPECT_NEAR(y, testing::RefAct(Activation::kGelu, z), 1e-6) << "z=" << z;
  }
}

TEST(EmbeddingTest, GatherCopiesTheRows) {
  for (int dim : {1, 3, 16, 33}) {
    const int64_t rows = 50, n = 77;
    const std::vector<float> table = RandomVector(rows * dim, 3000 + dim);
    std::vector<int64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = (i * 37 + 11) % rows;
    std::vector<float> out(n * dim, kNaN);
    EmbeddingGather(n, dim, table.data(), rows, ids.data(), out.data());
    std::vector<double> ref(n * dim);
    for (int64_t i = 0; i < n; ++i)
      for (int d = 0; d < dim; ++d) ref[i * dim + d] = table[ids[i] * dim + d];
    EXPECT_EQ(RelativeError(out, ref), 0.0) << "dim=" << dim;
  }
}

TEST(EmbeddingTest, ScatterAddDeduplicatesAndSums) {
  uint64_t seed = 4000;
  for (int64_t n : {1, 2, 17, 1000}) {
    for (int dim : {1, 4, 33}) {
      for (int distinct : {1, 5, 200}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " dim=" << dim << " distinct=" << distinct);
        const std::vector<uint64_t> keys = testing::RandomKeys(n, distinct, seed++);
        const std::vector<float> grads = RandomVector(n * dim, seed++);
        std::vector<uint64_t> ref_keys;
        std::vector<double> ref_sums;
        testing::RefScatterAdd(keys, grads, dim, &ref_keys, &ref_sums);
        std::vector<uint64_t> unique(n, 0xDEADBEEF);
        std::vector<float> summed(n * dim, kNaN);
        const int64_t u = EmbeddingScatterAdd(n, dim, keys.data(), grads.data(), unique.data(),
                                              summed.data());
        ASSERT_EQ(u, static_cast<int64_t>(ref_keys.size()));
        EXPECT_EQ(std::vector<uint64_t>(unique.begin(), unique.begin() + u), ref_keys);
        summed.resize(u * dim);
        EXPECT_LT(RelativeError(summed, ref_sums), kTolerance);
      }
    }
  }
}

TEST(OptimizerTest, SgdVariantsMatchReferenceOverSteps) {
  struct Case {
    float mu;
    bool nesterov;
    float wd;
  };
  uint64_t seed = 5000;
  for (const Case& c : {Case{0.0f, false, 0.0f}, Case{0.0f, false, 0.01f}, Case{0.9f, false, 0.0f},
                        Case{0.9f, true, 0.001f}}) {
    for (int64_t n : {1, 7, 1001}) {
      SCOPED_TRACE(::testing::Message() << "mu=" << c.mu << " nesterov=" << c.nesterov << " n=" << n);
      std::vector<float> w = RandomVector(n, seed++), v(n, 0.0f);
      const std::vector<float> w0 = w;
      testing::OptState ref{std::vector<double>(w.begin(), w.end()), std::vector<double>(n, 0.0), {}};
      for (int step = 0; step < 3; ++step) {
        const std::vector<float> g = RandomVector(n, seed++);
        SgdUpdate(n, 0.1f, c.mu, c.nesterov, c.wd, w.data(), g.data(), c.mu == 0 ? nullptr : v.data());
        testing::RefSgd(&ref, g, 0.1f, c.mu, c.nesterov, c.wd);
      }
      // Compare the change of the weights, not the weights (which barely move).
      std::vector<float> delta(n);
      std::vector<double> ref_delta(n);
      for (int64_t i = 0; i < n; ++i) {
        delta[i] = w[i] - w0[i];
        ref_delta[i] = ref.w[i] - w0[i];
      }
      EXPECT_LT(RelativeError(delta, ref_delta), 1e-5);
      if (c.mu != 0) {
        EXPECT_LT(RelativeError(v, ref.s0), kTolerance);
      }
    }
  }
}

TEST(OptimizerTest, AdamMatchesReferenceOverSteps) {
  uint64_t seed = 6000;
  for (int64_t n : {1, 7, 1001}) {
    for (float wd : {0.0f, 0.01f}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " wd=" << wd);
      std::vector<float> w = RandomVector(n, seed++), m(n, 0.0f), v(n, 0.0f);
      const std::vector<float> w0 = w;
      testing::OptState ref{std::vector<double>(w.begin(), w.end()), std::vector<double>(n, 0.0),
                            std::vector<double>(n, 0.0)};
      for (int64_t t = 1; t <= 4; ++t) {
        const std::vector<float> g = RandomVector(n, seed++);
        AdamUpdate(n, 0.01f, 0.9f, 0.999f, 1e-8f, wd, t, w.data(), g.data(), m.data(), v.data());
        testing::RefAdam(&ref, g, 0.01f, 0.9f, 0.999f, 1e-8f, wd, t);
      }
      std::vector<float> delta(n);
      std::vector<double> ref_delta(n);
      for (int64_t i = 0; i < n; ++i) {
        delta[i] = w[i] - w0[i];
        ref_delta[i] = ref.w[i] - w0[i];
      }
      EXPECT_LT(RelativeError(delta, ref_delta), 1e-4);
      EXPECT_LT(RelativeError(m, ref.s0), kTolerance);
      EXPECT_LT(RelativeError(v, ref.s1), kTolerance);
    }
  }
}

}  // namespace
}  // namespace tessera::kernels
