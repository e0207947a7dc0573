#include "worker/model.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/initializer.h"
#include "gtest/gtest.h"

namespace tessera::worker {
namespace {

ModelSpec Mlp(std::vector<int> hidden) {
  ModelSpec spec;
  spec.set_kind(ModelSpec::MLP);
  for (int h : hidden) spec.add_hidden_layers(h);
  return spec;
}

ModelSpec Softmax() {
  ModelSpec spec;
  spec.set_kind(ModelSpec::SOFTMAX_REGRESSION);
  return spec;
}

std::unique_ptr<Model> MakeModel(const ModelSpec& spec, int dim, int classes, int max_batch,
                                 uint64_t seed) {
  absl::StatusOr<std::unique_ptr<Model>> m = Model::Create(spec, dim, classes, max_batch);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  (*m)->InitializeParameters(seed);
  return std::move(*m);
}

// Separable synthetic classes: a random centre per class plus noise.
struct Synthetic {
  std::vector<float> x;
  std::vector<int32_t> y;
};

Synthetic MakeClusters(int n, int dim, int classes, float noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centres(static_cast<size_t>(classes) * dim);
  for (float& c : centres) c = normal(rng);
  Synthetic s;
  for (int i = 0; i < n; ++i) {
    const int label = static_cast<int>(rng() % classes);
    s.y.push_back(label);
    for (int j = 0; j < dim; ++j) s.x.push_back(centres[label * dim + j] + noise * normal(rng));
  }
  return s;
}

TEST(ModelTest, ParametersNamesShapesAndInit) {
  std::unique_ptr<Model> m = MakeModel(Mlp({5, 4}), 3, 7, 8, 1);
  ASSERT_NE(m, nullptr);
  const std::vector<TensorSpec> p = m->Parameters();
  ASSERT_EQ(p.size(), 6u);
  ASSERT_EQ(m->num_tensors(), 6);
  const std::vector<std::string> names = {"dense0/w", "dense0/b", "dense1/w",
                                          "dense1/b", "dense2/w", "dense2/b"};
  const std::vector<uint64_t> sizes = {15, 5, 20, 4, 28, 7};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(p[i].name(), names[i]);
    EXPECT_EQ(p[i].size(), sizes[i]);
    EXPECT_EQ(m->param(i).size(), sizes[i]);
    EXPECT_EQ(m->grad(i).size(), sizes[i]);
    EXPECT_EQ(p[i].init(), i % 2 == 0 ? TensorSpec::UNIFORM : TensorSpec::ZEROS);
  }
  EXPECT_FLOAT_EQ(p[0].scale(), std::sqrt(6.0f / 3));       // He: followed by ReLU
  EXPECT_FLOAT_EQ(p[2].scale(), std::sqrt(6.0f / 5));
  EXPECT_FLOAT_EQ(p[4].scale(), std::sqrt(6.0f / (4 + 7)));  // Glorot: last layer

  std::unique_ptr<Model> s = MakeModel(Softmax(), 784, 10, 64, 1);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->num_tensors(), 2);
  EXPECT_EQ(s->Parameters()[0].size(), 7840u);
  EXPECT_FLOAT_EQ(s->Parameters()[0].scale(), std::sqrt(6.0f / 794));
}

TEST(ModelTest, InitializeParametersMatchesTheServersInitializer) {
  std::unique_ptr<Model> m = MakeModel(Mlp({6}), 4, 3, 2, 77);
  ASSERT_NE(m, nullptr);
  const std::vector<TensorSpec> specs = m->Parameters();
  for (int i = 0; i < m->num_tensors(); ++i) {
    const TensorSpec& spec = specs[i];
    std::vector<float> expected(spec.size());
    InitializeSlice(spec, 77, Range{0, spec.size()}, absl::MakeSpan(expected));
    const absl::Span<const float> got = m->param(i);
    EXPECT_EQ(std::vector<float>(got.begin(), got.end()), expected) << spec.name();
    bool any_nonzero = false;
    for (float v : got) {
      EXPECT_LE(std::fabs(v), spec.scale());
      any_nonzero |= v != 0.0f;
    }
    EXPECT_EQ(any_nonzero, spec.init() == TensorSpec::UNIFORM) << spec.name();
  }
}

TEST(ModelTest, CreateRejectsBadSpecs) {
  ModelSpec unknown;
  EXPECT_EQ(Model::Create(unknown, 4, 3, 8).status().code(), absl::StatusCode::kInvalidArgument);
  ModelSpec softmax_hidden = Softmax();
  softmax_hidden.add_hidden_layers(8);
  EXPECT_EQ(Model::Create(softmax_hidden, 4, 3, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Mlp({}), 4, 3, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Mlp({8, 0}), 4, 3, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Mlp({8, -2}), 4, 3, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Softmax(), 0, 3, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Softmax(), 4, 1, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Softmax(), 4, 3, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Create(Mlp({1 << 20}), 1 << 20, 3, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Model::Create(Mlp({8}), 4, 3, 8).ok());
}

// Central differences of the mean loss against ForwardBackward's gradients on
// a sample of coordinates of every tensor.
void CheckGradients(const ModelSpec& spec, uint64_t seed) {
  const int dim = 6, classes = 4, batch = 5;
  std::unique_ptr<Model> m = MakeModel(spec, dim, classes, batch, seed);
  ASSERT_NE(m, nullptr);
  // Non-zero biases so their gradients are exercised away from the init.
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (int i = 1; i < m->num_tensors(); i += 2) {
    for (float& v : m->param(i)) v = u(rng);
  }
  const Synthetic data = MakeClusters(batch, dim, classes, 0.5f, seed + 1);
  m->ForwardBackward(data.x.data(), data.y.data(), batch).value();
  std::vector<std::vector<float>> analytic;
  for (int i = 0; i < m->num_tensors(); ++i) {
    analytic.emplace_back(m->grad(i).begin(), m->grad(i).end());
  }
  const float eps = 1e-3f;
  double diff2 = 0, norm2 = 0;
  int checked = 0;
  for (int i = 0; i < m->num_tensors(); ++i) {
    absl::Span<float> p = m->param(i);
    const size_t stride = std::max<size_t>(1, p.size() / 12);  // about 12 per tensor
    for (size_t j = 0; j < p.size(); j += stride) {
      const float saved = p[j];
      p[j] = saved + eps;
      const double plus = m->ForwardBackward(data.x.data(), data.y.data(), batch).value().loss;
      p[j] = saved - eps;
      const double minus = m->ForwardBackward(data.x.data(), data.y.data(), batch).value().loss;
      p[j] = saved;
      const double numeric = (plus - minus) / (2.0 * eps);
      const double a = analytic[i][j];
      diff2 += (numeric - a) * (numeric - a);
      norm2 += a * a;
      ++checked;
      EXPECT_NEAR(numeric, a, 1e-2 * std::fabs(a) + 2e-3)
          << m->Parameters()[i].name() << "[" << j << "]";
    }
  }
  ASSERT_GT(norm2, 0.0);
  EXPECT_LT(std::sqrt(diff2 / norm2), 1e-2) << checked << " coordinates";
}

TEST(ModelTest, GradientsMatchFiniteDifferencesSoftmax) { CheckGradients(Softmax(), 3); }

TEST(ModelTest, GradientsMatchFiniteDifferencesMlp) { CheckGradients(Mlp({7, 5}), 4); }

TEST(ModelTest, ForwardBackwardOverwritesGradients) {
  std::unique_ptr<Model> m = MakeModel(Mlp({8}), 6, 3, 4, 5);
  ASSERT_NE(m, nullptr);
  const Synthetic data = MakeClusters(4, 6, 3, 0.5f, 6);
  m->ForwardBackward(data.x.data(), data.y.data(), 4).value();
  const std::vector<float> first(m->grad(0).begin(), m->grad(0).end());
  m->ForwardBackward(data.x.data(), data.y.data(), 4).value();
  EXPECT_EQ(std::vector<float>(m->grad(0).begin(), m->grad(0).end()), first);
}

// Double-precision forward pass of the model, for Evaluate.
void ReferenceEvaluate(Model& m, const Synthetic& data, int n, double* loss, int64_t* correct) {
  const int tensors = m.num_tensors();
  *loss = 0;
  *correct = 0;
  for (int e = 0; e < n; ++e) {
    std::vector<double> h(data.x.begin() + e * m.input_dim(),
                          data.x.begin() + (e + 1) * m.input_dim());
    for (int t = 0; t < tensors; t += 2) {
      const absl::Span<const float> w = m.param(t), b = m.param(t + 1);
      const int out = static_cast<int>(b.size()), in = static_cast<int>(h.size());
      std::vector<double> next(out);
      for (int o = 0; o < out; ++o) {
        double s = b[o];
        for (int i = 0; i < in; ++i) s += h[i] * w[i * out + o];
        next[o] = (t + 2 < tensors && s < 0) ? 0.0 : s;
      }
      h = next;
    }
    double max = h[0];
    int argmax = 0;
    for (size_t c = 1; c < h.size(); ++c) {
      if (h[c] > max) {
        max = h[c];
        argmax = static_cast<int>(c);
      }
    }
    double sum = 0;
    for (double v : h) sum += std::exp(v - max);
    *loss += std::log(sum) - (h[data.y[e]] - max);
    *correct += argmax == data.y[e] ? 1 : 0;
  }
}

TEST(ModelTest, EvaluateSumsOverChunksAndMatchesReference) {
  const int n = 53;  // not a multiple of max_batch
  std::unique_ptr<Model> m = MakeModel(Mlp({9}), 6, 4, 8, 7);
  ASSERT_NE(m, nullptr);
  const Synthetic data = MakeClusters(n, 6, 4, 1.0f, 8);
  double ref_loss = 0;
  int64_t ref_correct = 0;
  ReferenceEvaluate(*m, data, n, &ref_loss, &ref_correct);
  const Model::StepResult r = m->Evaluate(data.x.data(), data.y.data(), n).value();
  EXPECT_NEAR(r.loss, ref_loss, 1e-5 * ref_loss);
  EXPECT_EQ(r.correct, ref_correct);
  EXPECT_GT(ref_correct, 0);
  EXPECT_LT(ref_correct, n);

  const Model::StepResult none = m->Evaluate(data.x.data(), data.y.data(), 0).value();
  EXPECT_EQ(none.loss, 0.0);
  EXPECT_EQ(none.correct, 0);

  // ForwardBackward reports the MEAN loss of the same examples.
  const Model::StepResult step = m->ForwardBackward(data.x.data(), data.y.data(), 8).value();
  double ref8 = 0;
  int64_t correct8 = 0;
  ReferenceEvaluate(*m, data, 8, &ref8, &correct8);
  EXPECT_NEAR(step.loss, ref8 / 8, 1e-5 * ref8);
  EXPECT_EQ(step.correct, correct8);
}

// Plain SGD on separable clusters: the loss must fall and accuracy rise.
void CheckTrains(const ModelSpec& spec) {
  const int dim = 20, classes = 5, batch = 32, n = 1024, steps = 300;
  std::unique_ptr<Model> m = MakeModel(spec, dim, classes, batch, 11);
  ASSERT_NE(m, nullptr);
  const Synthetic data = MakeClusters(n, dim, classes, 1.5f, 12);
  const Model::StepResult before = m->Evaluate(data.x.data(), data.y.data(), n).value();
  for (int s = 0; s < steps; ++s) {
    const int start = (s * batch) % n;
    m->ForwardBackward(data.x.data() + start * dim, data.y.data() + start, batch).value();
    for (int i = 0; i < m->num_tensors(); ++i) {
      absl::Span<float> p = m->param(i);
      absl::Span<const float> g = m->grad(i);
      for (size_t j = 0; j < p.size(); ++j) p[j] -= 0.1f * g[j];
    }
  }
  const Model::StepResult after = m->Evaluate(data.x.data(), data.y.data(), n).value();
  EXPECT_LT(after.loss, 0.3 * before.loss) << before.loss / n << " -> " << after.loss / n;
  EXPECT_GT(after.correct, n * 9 / 10);
}

TEST(ModelTest, SgdReducesLossSoftmax) { CheckTrains(Softmax()); }

TEST(ModelTest, SgdReducesLossMlp) { CheckTrains(Mlp({32, 16})); }

}  // namespace
}  // namespace tessera::worker
