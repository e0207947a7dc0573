#include "worker/model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/initializer.h"
#include "common/range.h"
#include "common/status_macros.h"
#include "kernels/cpu_kernels.h"
#include "spdlog/spdlog.h"

namespace tessera::worker {

namespace kernels = ::tessera::kernels;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, int input_dim,
                                                     int num_classes, int max_batch,
                                                     ComputeBackend* backend) {
  if (input_dim < 1) return absl::InvalidArgumentError(absl::StrCat("input_dim ", input_dim));
  if (num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat("num_classes ", num_classes, "; need >= 2"));
  }
  if (max_batch < 1) return absl::InvalidArgumentError(absl::StrCat("max_batch ", max_batch));
  std::vector<int> widths = {input_dim};
  switch (spec.kind()) {
    case ModelSpec::SOFTMAX_REGRESSION:
      if (spec.hidden_layers_size() > 0) {
        return absl::InvalidArgumentError("softmax_regression takes no hidden_layers");
      }
      break;
    case ModelSpec::MLP:
      if (spec.hidden_layers_size() == 0) {
        return absl::InvalidArgumentError("an mlp needs at least one hidden layer width");
      }
      for (int w : spec.hidden_layers()) {
        if (w < 1) return absl::InvalidArgumentError(absl::StrCat("hidden layer width ", w));
        widths.push_back(w);
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported model kind ", ModelSpec::Kind_Name(spec.kind()), " (",
                       static_cast<int>(spec.kind()), ")"));
  }
  widths.push_back(num_classes);
  // The kernels take int sizes: every matrix must have fewer than INT_MAX elements.
  for (size_t l = 0; l + 1 < widths.size(); ++l) {
    if (int64_t{widths[l]} * widths[l + 1] > INT_MAX ||
        int64_t{max_batch} * std::max(widths[l], widths[l + 1]) > INT_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, " of ", widths[l], " x ",
                                                     widths[l + 1], " at batch ", max_batch,
                                                     " is too large"));
    }
  }
  std::unique_ptr<ComputeBackend> owned;
  if (backend == nullptr) {
    owned = NewCpuBackend();
    backend = owned.get();
  }
  std::unique_ptr<Model> model(new Model(std::move(widths), max_batch, backend, std::move(owned)));
  TESSERA_RETURN_IF_ERROR_CTX(model->AllocateBuffers(),
                              absl::StrCat("allocating the model on ", backend->name()));
  return model;
}

Model::Model(std::vector<int> widths, int max_batch, ComputeBackend* backend,
             std::unique_ptr<ComputeBackend> owned_backend)
    : widths_(std::move(widths)),
      max_batch_(max_batch),
      owned_backend_(std::move(owned_backend)),
      backend_(backend) {
  const int layers = static_cast<int>(widths_.size()) - 1;
  for (int l = 0; l < layers; ++l) {
    const int in = widths_[l], out = widths_[l + 1];
    const bool last = l == layers - 1;
    TensorSpec w;
    w.set_name(absl::StrCat("dense", l, "/w"));
    w.set_size(static_cast<uint64_t>(in) * out);
    w.set_init(TensorSpec::UNIFORM);
    w.set_scale(static_cast<float>(last ? std::sqrt(6.0 / (in + out)) : std::sqrt(6.0 / in)));
    TensorSpec b;
    b.set_name(absl::StrCat("dense", l, "/b"));
    b.set_size(static_cast<uint64_t>(out));
    b.set_init(TensorSpec::ZEROS);
    specs_.push_back(std::move(w));
    specs_.push_back(std::move(b));
  }
  for (const TensorSpec& s : specs_) sizes_.push_back(static_cast<size_t>(s.size()));
}

absl::Status Model::AllocateBuffers() {
  const bool host = backend_->host_memory();
  for (size_t size : sizes_) {
    const size_t bytes = size * sizeof(float);
    TESSERA_ASSIGN_OR_RETURN(host_params_.emplace_back(), backend_->AllocateHost(bytes));
    TESSERA_ASSIGN_OR_RETURN(host_grads_.emplace_back(), backend_->AllocateHost(bytes));
    if (host) {
      params_.push_back(host_params_.back()->as<float>());
      grads_.push_back(host_grads_.back()->as<float>());
    } else {
      TESSERA_ASSIGN_OR_RETURN(dev_params_.emplace_back(), backend_->Allocate(bytes));
      TESSERA_ASSIGN_OR_RETURN(dev_grads_.emplace_back(), backend_->Allocate(bytes));
      params_.push_back(dev_params_.back()->as<float>());
      grads_.push_back(dev_grads_.back()->as<float>());
    }
  }
  const int layers = static_cast<int>(widths_.size()) - 1;
  for (int l = 0; l < layers; ++l) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(max_batch_) * widths_[l + 1];
    TESSERA_ASSIGN_OR_RETURN(acts_.emplace_back(), backend_->Allocate(bytes));
    TESSERA_ASSIGN_OR_RETURN(deltas_.emplace_back(), backend_->Allocate(bytes));
  }
  if (!host) {
    const size_t x_bytes = sizeof(float) * static_cast<size_t>(max_batch_) * widths_.front();
    const size_t y_bytes = sizeof(int32_t) * static_cast<size_t>(max_batch_);
    TESSERA_ASSIGN_OR_RETURN(host_x_, backend_->AllocateHost(x_bytes));
    TESSERA_ASSIGN_OR_RETURN(host_y_, backend_->AllocateHost(y_bytes));
    TESSERA_ASSIGN_OR_RETURN(dev_x_, backend_->Allocate(x_bytes));
    TESSERA_ASSIGN_OR_RETURN(dev_y_, backend_->Allocate(y_bytes));
  }
  TESSERA_ASSIGN_OR_RETURN(totals_, backend_->NewLossTotals());
  return absl::OkStatus();
}

std::vector<TensorSpec> Model::Parameters() const { return specs_; }

void Model::InitializeParameters(uint64_t seed) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    InitializeSlice(specs_[i], seed, Range{0, specs_[i].size()}, param(static_cast<int>(i)));
  }
}

absl::Status Model::UploadParameters() {
  if (backend_->host_memory()) return absl::OkStatus();
  for (size_t i = 0; i < sizes_.size(); ++i) {
    TESSERA_RETURN_IF_ERROR(
        backend_->Upload(params_[i], host_params_[i]->data(), sizes_[i] * sizeof(float)));
  }
  return absl::OkStatus();
}

absl::Status Model::StageBatch(const float* x, const int32_t* y, int batch, const float** dx,
                               const int32_t** dy) {
  if (backend_->host_memory()) {
    *dx = x;
    if (y != nullptr) *dy = y;
    return absl::OkStatus();
  }
  // Through pinned memory, so the copy is a true asynchronous DMA.
  CopyBatchToStaging(x, y, batch);
  const size_t x_bytes = sizeof(float) * static_cast<size_t>(batch) * input_dim();
  TESSERA_RETURN_IF_ERROR(backend_->Upload(dev_x_->data(), host_x_->data(), x_bytes));
  *dx = dev_x_->as<float>();
  if (y != nullptr) {
    const size_t y_bytes = sizeof(int32_t) * static_cast<size_t>(batch);
    TESSERA_RETURN_IF_ERROR(backend_->Upload(dev_y_->data(), host_y_->data(), y_bytes));
    *dy = dev_y_->as<int32_t>();
  }
  return absl::OkStatus();
}

void Model::CopyBatchToStaging(const float* x, const int32_t* y, int batch) {
  // The previous step or chunk synchronized before returning: the staging is free.
  std::memcpy(host_x_->data(), x, sizeof(float) * static_cast<size_t>(batch) * input_dim());
  if (y != nullptr) std::memcpy(host_y_->data(), y, sizeof(int32_t) * static_cast<size_t>(batch));
}

absl::Status Model::Forward(const float* x, int batch) {
  const int layers = static_cast<int>(acts_.size());
  const float* in = x;
  for (int l = 0; l < layers; ++l) {
    const int fan_in = widths_[l], out = widths_[l + 1];
    float* y = acts_[l]->as<float>();
    TESSERA_RETURN_IF_ERROR(backend_->Gemm(false, false, batch, out, fan_in, 1.0f, in, fan_in,
                                           params_[2 * l], out, 0.0f, y, out));
    TESSERA_RETURN_IF_ERROR(backend_->BiasActivation(
        batch, out, y, params_[2 * l + 1],
        l + 1 < layers ? kernels::Activation::kRelu : kernels::Activation::kIdentity, y));
    in = y;
  }
  return absl::OkStatus();
}

absl::StatusOr<Model::StepResult> Model::ForwardBackward(const float* x, const int32_t* y,
                                                         int batch,
                                                         const GradientReady& on_gradient) {
  // Tensors whose gradient copy was issued (backends that copy asynchronously),
  // in the order they were.
  std::vector<int> issued;
  if (backend_->HasCapture(batch)) {
    // A captured step: new inputs into the same host buffers, one launch.
    CopyBatchToStaging(x, y, batch);
    TESSERA_RETURN_IF_ERROR(backend_->ReplayCapture(batch));
    issued = captured_order_;
  } else if (backend_->can_capture() && capture_error_.ok() &&
             !seen_batches_.insert(batch).second) {
    // The second step of this batch size (the first one sized every buffer):
    // record it, then run it, and every later one, from the recording.
    TESSERA_RETURN_IF_ERROR(backend_->BeginCapture());
    const absl::Status recorded = IssueStep(x, y, batch, on_gradient, &issued);
    const absl::Status ended = backend_->EndCapture(batch, recorded.ok());
    if (recorded.ok() && ended.ok()) {
      captured_order_ = issued;
      TESSERA_RETURN_IF_ERROR(backend_->ReplayCapture(batch));
    } else {
      capture_error_ = recorded.ok() ? ended : recorded;
      spdlog::warn("{}: capturing a training step failed ({}); issuing each step's calls instead",
                   backend_->name(), capture_error_.ToString());
      issued.clear();
      TESSERA_RETURN_IF_ERROR(IssueStep(x, y, batch, on_gradient, &issued));
    }
  } else {
    TESSERA_RETURN_IF_ERROR(IssueStep(x, y, batch, on_gradient, &issued));
  }
  // CUDA: every kernel is queued; hand each gradient over as its copy lands,
  // while the device still runs the rest of backward.
  for (int tensor : issued) {
    TESSERA_RETURN_IF_ERROR(backend_->WaitDownload(tensor));
    if (on_gradient) TESSERA_RETURN_IF_ERROR(on_gradient(tensor));
  }
  StepResult result;
  TESSERA_RETURN_IF_ERROR(backend_->ReadLossTotals(*totals_, &result.loss, &result.correct));
  result.loss /= batch;
  return result;
}

absl::Status Model::IssueStep(const float* x, const int32_t* y, int batch,
                              const GradientReady& on_gradient, std::vector<int>* issued) {
  const int layers = static_cast<int>(acts_.size());
  TESSERA_RETURN_IF_ERROR(UploadParameters());
  const float* dx = nullptr;
  const int32_t* dy = nullptr;
  TESSERA_RETURN_IF_ERROR(StageBatch(x, y, batch, &dx, &dy));
  TESSERA_RETURN_IF_ERROR(Forward(dx, batch));
  TESSERA_RETURN_IF_ERROR(backend_->ResetLossTotals(totals_.get()));
  TESSERA_RETURN_IF_ERROR(backend_->SoftmaxCrossEntropy(acts_.back()->as<float>(), dy, batch,
                                                        num_classes(),
                                                        deltas_.back()->as<float>(),
                                                        totals_.get()));
  auto deliver = [&](int tensor) -> absl::Status {
    TESSERA_RETURN_IF_ERROR(backend_->Download(host_grads_[tensor]->data(), grads_[tensor],
                                               sizes_[tensor] * sizeof(float), tensor));
    if (backend_->synchronous()) {
      // The CPU: the gradient is final now; the rest of backward runs after
      // the callback, so a streaming client sends while we compute.
      if (on_gradient) TESSERA_RETURN_IF_ERROR(on_gradient(tensor));
    } else {
      issued->push_back(tensor);
    }
    return absl::OkStatus();
  };
  for (int l = layers - 1; l >= 0; --l) {
    const int fan_in = widths_[l], out = widths_[l + 1];
    const float* in = l == 0 ? dx : acts_[l - 1]->as<float>();
    const float* delta = deltas_[l]->as<float>();
    // dW = in^T * delta (delta already carries 1/batch).
    TESSERA_RETURN_IF_ERROR(backend_->Gemm(true, false, fan_in, out, batch, 1.0f, in, fan_in,
                                           delta, out, 0.0f, grads_[2 * l], out));
    // db: for the last layer the column sums of delta; for hidden layers it
    // was computed with the ReLU backward (below, one layer earlier).
    if (l == layers - 1) {
      TESSERA_RETURN_IF_ERROR(backend_->ColumnSum(batch, out, 1.0f, delta, 0.0f, grads_[2 * l + 1]));
    }
    TESSERA_RETURN_IF_ERROR(deliver(2 * l));
    TESSERA_RETURN_IF_ERROR(deliver(2 * l + 1));
    if (l > 0) {
      // d(hidden output) = delta * W^T, then through the ReLU of layer l - 1,
      // fused with that layer's bias gradient.
      float* prev = deltas_[l - 1]->as<float>();
      TESSERA_RETURN_IF_ERROR(backend_->Gemm(false, true, batch, fan_in, out, 1.0f, delta, out,
                                             params_[2 * l], out, 0.0f, prev, fan_in));
      TESSERA_RETURN_IF_ERROR(backend_->BiasActivationBackward(
          batch, fan_in, kernels::Activation::kRelu, prev, nullptr, nullptr,
          acts_[l - 1]->as<float>(), prev, grads_[2 * (l - 1) + 1]));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Model::StepResult> Model::Evaluate(const float* x, const int32_t* y, int64_t n) {
  StepResult result;
  TESSERA_RETURN_IF_ERROR(UploadParameters());
  TESSERA_RETURN_IF_ERROR(backend_->ResetLossTotals(totals_.get()));
  for (int64_t start = 0; start < n; start += max_batch_) {
    const int chunk = static_cast<int>(std::min<int64_t>(max_batch_, n - start));
    const float* dx = nullptr;
    const int32_t* dy = nullptr;
    TESSERA_RETURN_IF_ERROR(StageBatch(x + start * input_dim(), y + start, chunk, &dx, &dy));
    TESSERA_RETURN_IF_ERROR(Forward(dx, chunk));
    TESSERA_RETURN_IF_ERROR(backend_->SoftmaxCrossEntropy(acts_.back()->as<float>(), dy, chunk,
                                                          num_classes(), nullptr, totals_.get()));
    // The staging buffers are reused by the next chunk: wait for this one.
    if (!backend_->host_memory()) TESSERA_RETURN_IF_ERROR(backend_->Synchronize());
  }
  TESSERA_RETURN_IF_ERROR(backend_->ReadLossTotals(*totals_, &result.loss, &result.correct));
  return result;
}

}  // namespace tessera::worker
