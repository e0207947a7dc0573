#include "server/optimizer.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tessera::server {
namespace {

// The loops below take raw, non-aliasing pointers: through absl::Span's
// checked operator[] (Debian builds Abseil hardened) GCC emits one scalar
// element at a time; this way it vectorizes them. Each is written once, over
// a gradient of floats (ApplyPart) or of unaligned little-endian float32
// bytes (ApplyPartBytes), read by Grad.

inline float Grad(const float* g, size_t i) { return g[i]; }
inline float Grad(const char* g, size_t i) { return GradientAt(g, i); }

// An optimizer's two entry points, over its Derived::Step template.
template <typename Derived>
class StepOver : public Optimizer {
 public:
  void ApplyPart(float* w, const float* g, size_t n, OptimizerState* state,
                 size_t offset) const final {
    static_cast<const Derived*>(this)->Step(w, g, n, state, offset);
  }
  void ApplyPartBytes(float* w, const char* g, size_t n, OptimizerState* state,
                      size_t offset) const final {
    static_cast<const Derived*>(this)->Step(w, g, n, state, offset);
  }

 protected:
  explicit StepOver(const OptimizerSpec& spec) : Optimizer(spec) {}
};

class Sgd final : public StepOver<Sgd> {
 public:
  explicit Sgd(const OptimizerSpec& spec) : StepOver(spec) {}

  template <typename G>
  void Step(float* __restrict w, const G* __restrict g, size_t n, OptimizerState* state,
            size_t offset) const {
    const float lr = spec().learning_rate();
    const float wd = spec().weight_decay();
    const float mu = spec().momentum();
    if (mu == 0.0f) {
      for (size_t i = 0; i < n; ++i) w[i] -= lr * (Grad(g, i) + wd * w[i]);
      return;
    }
    float* __restrict v = state->slot0.data() + offset;
    if (spec().nesterov()) {
      for (size_t i = 0; i < n; ++i) {
        const float gi = Grad(g, i) + wd * w[i];
        v[i] = mu * v[i] + gi;
        w[i] -= lr * (gi + mu * v[i]);
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] + (Grad(g, i) + wd * w[i]);
        w[i] -= lr * v[i];
      }
    }
  }

 protected:
  void InitState(OptimizerState* state, size_t n) const override {
    if (spec().momentum() != 0.0f) state->slot0.assign(n, 0.0f);
  }
};

class Adagrad final : public StepOver<Adagrad> {
 public:
  explicit Adagrad(const OptimizerSpec& spec) : StepOver(spec) {}

  template <typename G>
  void Step(float* __restrict w, const G* __restrict g, size_t n, OptimizerState* state,
            size_t offset) const {
    const float lr = spec().learning_rate();
    const float wd = spec().weight_decay();
    const float eps = spec().epsilon();
    float* __restrict acc = state->slot0.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      const float gi = Grad(g, i) + wd * w[i];
      acc[i] += gi * gi;
      w[i] -= lr * gi / (std::sqrt(acc[i]) + eps);
    }
  }

 protected:
  void InitState(OptimizerState* state, size_t n) const override {
    state->slot0.assign(n, spec().initial_accumulator());
  }
};

class Adam final : public StepOver<Adam> {
 public:
  explicit Adam(const OptimizerSpec& spec) : StepOver(spec) {}

  template <typename G>
  void Step(float* __restrict w, const G* __restrict g, size_t n, OptimizerState* state,
            size_t offset) const {
    const float lr = spec().learning_rate();
    const float wd = spec().weight_decay();
    const float b1 = spec().beta1();
    const float b2 = spec().beta2();
    const float eps = spec().epsilon();
    const int64_t t = state->step + 1;  // this step's number
    // Bias corrections in double: b^t underflows gracefully and stays exact
    // enough for the first steps, where they matter.
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(b1), t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(b2), t));
    float* __restrict m = state->slot0.data() + offset;
    float* __restrict v = state->slot1.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      const float gi = Grad(g, i) + wd * w[i];
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      w[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
    }
  }

 protected:
  void InitState(OptimizerState* state, size_t n) const override {
    state->slot0.assign(n, 0.0f);
    state->slot1.assign(n, 0.0f);
  }
};

absl::Status Bad(absl::string_view field, absl::string_view why, float value) {
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer.", field, " ", why, ", got ", value));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const OptimizerSpec& spec) {
  if (!(spec.learning_rate() > 0.0f) || !std::isfinite(spec.learning_rate())) {
    return Bad("learning_rate", "must be a positive number", spec.learning_rate());
  }
  if (!(spec.weight_decay() >= 0.0f) || !std::isfinite(spec.weight_decay())) {
    return Bad("weight_decay", "must be >= 0", spec.weight_decay());
  }
  if (!(spec.epsilon() >= 0.0f) || !std::isfinite(spec.epsilon())) {
    return Bad("epsilon", "must be >= 0", spec.epsilon());
  }
  switch (spec.kind()) {
    case OptimizerSpec::SGD:
      if (!(spec.momentum() >= 0.0f && spec.momentum() < 1.0f)) {
        return Bad("momentum", "must be in [0, 1)", spec.momentum());
      }
      if (spec.nesterov() && spec.momentum() == 0.0f) {
        return absl::InvalidArgumentError("optimizer.nesterov needs a momentum > 0");
      }
      return std::unique_ptr<Optimizer>(new Sgd(spec));
    case OptimizerSpec::ADAGRAD:
      if (!(spec.initial_accumulator() >= 0.0f)) {
        return Bad("initial_accumulator", "must be >= 0", spec.initial_accumulator());
      }
      if (spec.initial_accumulator() == 0.0f && spec.epsilon() == 0.0f) {
        return absl::InvalidArgumentError(
            "optimizer: adagrad needs initial_accumulator > 0 or epsilon > 0 "
            "(it divides by sqrt(accumulator) + epsilon)");
      }
      return std::unique_ptr<Optimizer>(new Adagrad(spec));
    case OptimizerSpec::ADAM:
      if (!(spec.beta1() >= 0.0f && spec.beta1() < 1.0f)) {
        return Bad("beta1", "must be in [0, 1)", spec.beta1());
      }
      if (!(spec.beta2() >= 0.0f && spec.beta2() < 1.0f)) {
        return Bad("beta2", "must be in [0, 1)", spec.beta2());
      }
      return std::unique_ptr<Optimizer>(new Adam(spec));
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer.type: unknown optimizer kind ", static_cast<int>(spec.kind()),
          " (sgd, adagrad or adam)"));
  }
}

std::unique_ptr<OptimizerState> Optimizer::NewState(size_t n) const {
  auto state = std::make_unique<OptimizerState>();
  InitState(state.get(), n);
  return state;
}

}  // namespace tessera::server
