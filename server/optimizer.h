#ifndef TESSERA_SERVER_OPTIMIZER_H_
#define TESSERA_SERVER_OPTIMIZER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace tessera::server {

// Optimizer state of one contiguous block of weights (a slice), kept beside
// those weights. Which slots are used depends on the optimizer:
//   SGD with momentum: slot0 = momentum buffer.
//   Adagrad:           slot0 = squared-gradient accumulator.
//   Adam:              slot0 = first moment, slot1 = second moment.
// Not thread-safe: guarded by whoever owns the weights.
struct OptimizerState {
  std::vector<float> slot0;
  std::vector<float> slot1;
  int64_t step = 0;  // optimizer steps applied to this block
};

// Applies one optimizer step to a block of weights. Built from an
// OptimizerSpec whose defaults are already applied (common/job_spec.h
// ApplyJobDefaults). Weight decay is L2 added to the gradient (g += wd * w)
// for every kind. Formulations:
//   SGD:      v = mu * v + g; w -= lr * (g + mu * v) if nesterov else lr * v
//             (PyTorch's; mu = 0 is plain w -= lr * g).
//   Adagrad:  acc += g^2 (acc starts at initial_accumulator);
//             w -= lr * g / (sqrt(acc) + eps).
//   Adam:     t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//             w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
// The same object serves the distributed servers and a single-process
// reference, so both produce the same numbers for the same gradients.
// Thread-safe: the object is immutable; each call touches only its arguments.
// The i-th of the little-endian float32 values at `bytes`, at any alignment:
// the gradient of Optimizer::ApplyPartBytes. memcpy is how C++ reads a float
// from unaligned bytes; GCC compiles it to an unaligned (vector) load.
inline float GradientAt(const char* bytes, size_t i) {
  float v;
  std::memcpy(&v, bytes + i * sizeof(float), sizeof(float));
  return v;
}

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // INVALID_ARGUMENT (naming the field) for an unknown kind or a bad setting.
  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(const OptimizerSpec& spec);

  // Fresh state for a block of `n` weights.
  std::unique_ptr<OptimizerState> NewState(size_t n) const;

  // One step: updates `w` and `state` with gradient `g`.
  // REQUIRES: g.size() == w.size(), state from NewState(w.size()).
  void Apply(absl::Span<float> w, absl::Span<const float> g, OptimizerState* state) const {
    ApplyPart(w.data(), g.data(), w.size(), state, 0);
    FinishStep(state);
  }

  // The same step in parts, for a gradient read block by block: ApplyPart
  // for parts that together cover the block once, then FinishStep. Gives
  // Apply's numbers bit for bit. A part updates w[0, n), which are elements
  // [offset, offset + n) of the block `state` belongs to; g must not overlap w.
  virtual void ApplyPart(float* w, const float* g, size_t n, OptimizerState* state,
                         size_t offset) const = 0;
  // ApplyPart with the gradient as n little-endian float32 values at `g`, at
  // any alignment (e.g. where they arrived from the network), so a step reads
  // them where they lie instead of from a copy. The same numbers, bit for bit.
  virtual void ApplyPartBytes(float* w, const char* g, size_t n, OptimizerState* state,
                              size_t offset) const = 0;
  void FinishStep(OptimizerState* state) const { ++state->step; }

  const OptimizerSpec& spec() const { return spec_; }

 protected:
  explicit Optimizer(const OptimizerSpec& spec) : spec_(spec) {}

  // Fills the slots NewState allocates; called with slots already sized.
  virtual void InitState(OptimizerState* state, size_t n) const = 0;

 private:
  const OptimizerSpec spec_;
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_OPTIMIZER_H_
