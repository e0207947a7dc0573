#ifndef TESSERA_WORKER_MODEL_H_
#define TESSERA_WORKER_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"
#include "worker/compute_backend.h"

namespace tessera::worker {

// A dense classifier trained with softmax cross-entropy:
//   SOFTMAX_REGRESSION: logits = x W0 + b0
//   MLP:                h1 = relu(x W0 + b0), ..., logits = h_L W_L + b_L
// Owns its parameters and gradients as flat float host buffers, one per tensor
// in Parameters() order (pinned on a CUDA backend), and preallocated
// activations for up to max_batch examples: no step allocates. The math runs
// on a ComputeBackend (worker/compute_backend.h): the CPU kernels, or CUDA
// with parameters copied to the device at the start of each step and each
// layer's gradients copied back as soon as backward produces them.
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
  // max_batch < 1, or sizes whose products overflow an int; the backend's
  // error when its memory cannot be allocated.
  // `backend` (borrowed, must outlive the Model) runs the math; null: the Model
  // owns a CPU backend.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelSpec& spec, int input_dim,
                                                       int num_classes, int max_batch,
                                                       ComputeBackend* backend = nullptr);

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
  // param(i) is where the trainer pulls into: read by the next
  // ForwardBackward/Evaluate. grad(i) holds the last step's gradient.
  absl::Span<float> param(int i) { return {host_params_[i]->as<float>(), sizes_[i]}; }
  absl::Span<const float> param(int i) const { return {host_params_[i]->as<float>(), sizes_[i]}; }
  absl::Span<const float> grad(int i) const { return {host_grads_[i]->as<float>(), sizes_[i]}; }

  int input_dim() const { return widths_.front(); }
  int num_classes() const { return widths_.back(); }
  int max_batch() const { return max_batch_; }
  ComputeBackend* backend() const { return backend_; }

  // Called with a tensor index once grad(tensor) is final on the host, during
  // ForwardBackward, last layer first (weights, then bias). An error stops
  // the step and is returned by ForwardBackward.
  using GradientReady = std::function<absl::Status(int tensor)>;

  // One training step's math: forward pass on `batch` examples (x is batch x
  // input_dim, row-major; y their labels), then overwrites every grad buffer
  // with the gradient of the MEAN loss over the batch. Returns the mean loss
  // and the correct count. Parameters are not changed. `on_gradient` (may be
  // null) hears of each tensor's gradient as it becomes ready: on the CPU
  // between the layers of backward; on CUDA as each layer's device-to-host
  // copy completes while the device runs the rest of backward.
  // Errors: the backend's (CUDA) or on_gradient's.
  // REQUIRES: 1 <= batch <= max_batch(), 0 <= y[i] < num_classes().
  absl::StatusOr<StepResult> ForwardBackward(const float* x, const int32_t* y, int batch,
                                             const GradientReady& on_gradient = nullptr);

  // Forward only over n examples, in chunks of max_batch(). Returns the SUMMED
  // loss and the correct count. Gradients are untouched.
  // REQUIRES: n >= 0, 0 <= y[i] < num_classes().
  absl::StatusOr<StepResult> Evaluate(const float* x, const int32_t* y, int64_t n);

 private:
  Model(std::vector<int> widths, int max_batch, ComputeBackend* backend,
        std::unique_ptr<ComputeBackend> owned_backend);
  absl::Status AllocateBuffers();

  // Copies the host parameters to the backend (no-op on host memory).
  absl::Status UploadParameters();
  // Puts `batch` rows of x (and labels y, when not null) where the backend
  // reads them; returns the backend pointers in *dx (and *dy, with y).
  absl::Status StageBatch(const float* x, const int32_t* y, int batch, const float** dx,
                          const int32_t** dy);
  // Copies `batch` rows of x (and y, when not null) into the pinned staging.
  void CopyBatchToStaging(const float* x, const int32_t* y, int batch);
  // Runs the layers on `batch` rows of x (backend memory); the logits end in acts_.back().
  absl::Status Forward(const float* x, int batch);
  // Issues one training step's calls: uploads, forward, loss, backward and
  // the gradient downloads. A synchronous backend hands each gradient to
  // on_gradient as it is final; otherwise the tensors are appended to *issued.
  absl::Status IssueStep(const float* x, const int32_t* y, int batch,
                         const GradientReady& on_gradient, std::vector<int>* issued);

  // Constant after construction.
  const std::vector<int> widths_;  // input_dim, hidden..., num_classes
  const int max_batch_;
  std::vector<TensorSpec> specs_;
  std::vector<size_t> sizes_;  // floats per tensor
  std::unique_ptr<ComputeBackend> owned_backend_;  // when Create got none
  ComputeBackend* const backend_;

  // Host buffers, per tensor in Parameters() order (pinned on CUDA).
  std::vector<std::unique_ptr<BackendBuffer>> host_params_;
  std::vector<std::unique_ptr<BackendBuffer>> host_grads_;
  // Backend copies; empty when backend_->host_memory() (the host buffers are used).
  std::vector<std::unique_ptr<BackendBuffer>> dev_params_;
  std::vector<std::unique_ptr<BackendBuffer>> dev_grads_;
  std::vector<float*> params_;  // backend pointers, one per tensor
  std::vector<float*> grads_;
  // acts_[l]: output of layer l (after ReLU for hidden layers; logits last),
  // max_batch x widths_[l + 1]. deltas_[l]: d(mean loss)/d(pre-activation) of
  // layer l, same shape. Backend memory.
  std::vector<std::unique_ptr<BackendBuffer>> acts_;
  std::vector<std::unique_ptr<BackendBuffer>> deltas_;
  // Input staging when the backend is not host memory: pinned host + device.
  std::unique_ptr<BackendBuffer> host_x_, host_y_, dev_x_, dev_y_;
  std::unique_ptr<BackendBuffer> totals_;  // loss sum and correct count

  // Step capture (ComputeBackend::can_capture): batch sizes stepped so far,
  // the download order of a captured step, and why capture was given up, if it was.
  std::set<int> seen_batches_;
  std::vector<int> captured_order_;
  absl::Status capture_error_;
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_MODEL_H_
