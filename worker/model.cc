#include "worker/model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/initializer.h"
#include "common/range.h"
#include "kernels/cpu_kernels.h"

namespace tessera::worker {

namespace kernels = ::tessera::kernels;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, int input_dim,
                                                     int num_classes, int max_batch) {
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
  return std::unique_ptr<Model>(new Model(std::move(widths), max_batch));
}

Model::Model(std::vector<int> widths, int max_batch)
    : widths_(std::move(widths)), max_batch_(max_batch) {
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
    acts_.emplace_back(static_cast<size_t>(max_batch_) * out);
    deltas_.emplace_back(static_cast<size_t>(max_batch_) * out);
  }
  for (const TensorSpec& s : specs_) {
    params_.emplace_back(s.size(), 0.0f);
    grads_.emplace_back(s.size(), 0.0f);
  }
}

std::vector<TensorSpec> Model::Parameters() const { return specs_; }

void Model::InitializeParameters(uint64_t seed) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    InitializeSlice(specs_[i], seed, Range{0, specs_[i].size()}, absl::MakeSpan(params_[i]));
  }
}

const float* Model::Forward(const float* x, int batch) {
  const int layers = static_cast<int>(acts_.size());
  const float* in = x;
  for (int l = 0; l < layers; ++l) {
    const int fan_in = widths_[l], out = widths_[l + 1];
    float* y = acts_[l].data();
    kernels::Gemm(false, false, batch, out, fan_in, 1.0f, in, fan_in, params_[2 * l].data(), out,
                  0.0f, y, out);
    if (l + 1 < layers) {
      kernels::BiasRelu(batch, out, y, params_[2 * l + 1].data(), y);
    } else {
      kernels::BiasAdd(batch, out, y, params_[2 * l + 1].data(), y);
    }
    in = y;
  }
  return acts_.back().data();
}

Model::StepResult Model::ForwardBackward(const float* x, const int32_t* y, int batch) {
  const int layers = static_cast<int>(acts_.size());
  const float* logits = Forward(x, batch);
  StepResult result;
  kernels::SoftmaxCrossEntropy(logits, y, batch, num_classes(), deltas_.back().data(),
                               &result.loss, &result.correct);
  result.loss /= batch;
  for (int l = layers - 1; l >= 0; --l) {
    const int fan_in = widths_[l], out = widths_[l + 1];
    const float* in = l == 0 ? x : acts_[l - 1].data();
    const float* delta = deltas_[l].data();
    // dW = in^T * delta; db = column sums of delta (delta already carries 1/batch).
    kernels::Gemm(true, false, fan_in, out, batch, 1.0f, in, fan_in, delta, out, 0.0f,
                  grads_[2 * l].data(), out);
    kernels::ColumnSum(batch, out, 1.0f, delta, 0.0f, grads_[2 * l + 1].data());
    if (l > 0) {
      // d(hidden output) = delta * W^T, then through the ReLU of layer l - 1.
      float* prev = deltas_[l - 1].data();
      kernels::Gemm(false, true, batch, fan_in, out, 1.0f, delta, out, params_[2 * l].data(),
                    out, 0.0f, prev, fan_in);
      kernels::ReluBackward(int64_t{batch} * fan_in, prev, acts_[l - 1].data(), prev);
    }
  }
  return result;
}

Model::StepResult Model::Evaluate(const float* x, const int32_t* y, int64_t n) {
  StepResult result;
  for (int64_t start = 0; start < n; start += max_batch_) {
    const int chunk = static_cast<int>(std::min<int64_t>(max_batch_, n - start));
    const float* logits = Forward(x + start * input_dim(), chunk);
    kernels::SoftmaxCrossEntropyLoss(logits, y + start, chunk, num_classes(), &result.loss,
                                     &result.correct);
  }
  return result;
}

}  // namespace tessera::worker
