#ifndef TESSERA_WORKER_MODEL_H_
#define TESSERA_WORKER_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace tessera::worker {

// A dense classifier trained with softmax cross-entropy:
//   SOFTMAX_REGRESSION: logits = x W0 + b0
//   MLP:                h1 = relu(x W0 + b0), ..., logits = h_L W_L + b_L
// Owns its parameters and gradients as flat float buffers, one per tensor in
// Parameters() order, and preallocated activations for up to max_batch
// examples: no step allocates. The math runs in kernels/cpu_kernels.h.
// Used by one thread.
class Model {
 public:
  struct StepResult {
    double loss = 0;      // ForwardBackward: mean over the batch; Evaluate: sum
    int64_t correct = 0;  // examples whose argmax logit is the label
  };

  // Builds the model for `input_dim` features and `num_classes` classes.
  // Parameters start at zero: call InitializeParameters() or overwrite them.
  // INVALID_ARGUMENT for an unknown kind, SOFTMAX_REGRESSION with hidden
  // layers, MLP without any, a width < 1, input_dim < 1, num_classes < 2,
  // max_batch < 1, or sizes whose products overflow an int.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelSpec& spec, int input_dim,
                                                       int num_classes, int max_batch);

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // The tensors, in order: "dense0/w" (in x out, row-major), "dense0/b" (out),
  // "dense1/w", ... Weights are UNIFORM with scale sqrt(6 / fan_in) before a
  // ReLU (He) and sqrt(6 / (fan_in + fan_out)) on the last layer (Glorot);
  // biases are ZEROS.
  std::vector<TensorSpec> Parameters() const;

  // Sets every parameter to its initial value for job seed `seed`, via
  // tessera::InitializeSlice: the same values the parameter servers produce.
  void InitializeParameters(uint64_t seed);

  int num_tensors() const { return static_cast<int>(specs_.size()); }
  // REQUIRES: 0 <= i < num_tensors(). Spans stay valid for the Model's life.
  absl::Span<float> param(int i) { return absl::MakeSpan(params_[i]); }
  absl::Span<const float> param(int i) const { return absl::MakeConstSpan(params_[i]); }
  absl::Span<const float> grad(int i) const { return absl::MakeConstSpan(grads_[i]); }

  int input_dim() const { return widths_.front(); }
  int num_classes() const { return widths_.back(); }
  int max_batch() const { return max_batch_; }

  // One training step's math: forward pass on `batch` examples (x is batch x
  // input_dim, row-major; y their labels), then overwrites every grad buffer
  // with the gradient of the MEAN loss over the batch. Returns the mean loss
  // and the correct count. Parameters are not changed.
  // REQUIRES: 1 <= batch <= max_batch(), 0 <= y[i] < num_classes().
  StepResult ForwardBackward(const float* x, const int32_t* y, int batch);

  // Forward only over n examples, in chunks of max_batch(). Returns the SUMMED
  // loss and the correct count. Gradients are untouched.
  // REQUIRES: n >= 0, 0 <= y[i] < num_classes().
  StepResult Evaluate(const float* x, const int32_t* y, int64_t n);

 private:
  Model(std::vector<int> widths, int max_batch);

  // Runs the layers on `batch` rows of x; returns the logits (in acts_.back()).
  const float* Forward(const float* x, int batch);

  // Constant after construction.
  const std::vector<int> widths_;  // input_dim, hidden..., num_classes
  const int max_batch_;
  std::vector<TensorSpec> specs_;

  std::vector<std::vector<float>> params_;  // per tensor, Parameters() order
  std::vector<std::vector<float>> grads_;   // same shapes as params_
  // acts_[l]: output of layer l (after ReLU for hidden layers; logits last),
  // max_batch x widths_[l + 1]. deltas_[l]: d(mean loss)/d(pre-activation) of
  // layer l, same shape.
  std::vector<std::vector<float>> acts_;
  std::vector<std::vector<float>> deltas_;
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_MODEL_H_
