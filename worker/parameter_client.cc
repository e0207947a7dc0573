#include "worker/parameter_client.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tessera::worker {

absl::Status ParameterClient::BeginPush(int64_t clock) {
  if (clock < 0) return absl::InvalidArgumentError(absl::StrCat("push at clock ", clock));
  stream_clock_ = clock;
  stream_grads_.clear();
  stream_seen_.clear();
  return absl::OkStatus();
}

absl::Status ParameterClient::PushTensor(int tensor, absl::Span<const float> grad) {
  if (stream_clock_ < 0) return absl::FailedPreconditionError("PushTensor without BeginPush");
  if (tensor < 0) return absl::InvalidArgumentError(absl::StrCat("push of tensor ", tensor));
  if (static_cast<size_t>(tensor) >= stream_grads_.size()) {
    stream_grads_.resize(tensor + 1);
    stream_seen_.resize(tensor + 1, false);
  }
  if (stream_seen_[tensor]) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor, " pushed twice"));
  }
  stream_grads_[tensor] = grad;
  stream_seen_[tensor] = true;
  return absl::OkStatus();
}

absl::Status ParameterClient::FinishPush() {
  if (stream_clock_ < 0) return absl::FailedPreconditionError("FinishPush without BeginPush");
  const int64_t clock = std::exchange(stream_clock_, -1);
  for (size_t t = 0; t < stream_seen_.size(); ++t) {
    if (!stream_seen_[t]) {
      return absl::InvalidArgumentError(absl::StrCat("push at clock ", clock, ": tensor ", t,
                                                     " was not pushed"));
    }
  }
  // Push checks the tensor count and sizes against the plan.
  return Push(clock, absl::MakeConstSpan(stream_grads_));
}

absl::Status ParameterClient::StartPull(int64_t clock, absl::Span<const absl::Span<float>> params) {
  if (clock < 0) return absl::InvalidArgumentError(absl::StrCat("pull at clock ", clock));
  if (pull_clock_ >= 0) return absl::FailedPreconditionError("a pull is already outstanding");
  pull_clock_ = clock;
  pull_params_.assign(params.begin(), params.end());
  return absl::OkStatus();
}

absl::Status ParameterClient::FinishPull(int64_t* view_clock) {
  if (pull_clock_ < 0) return absl::FailedPreconditionError("FinishPull without StartPull");
  const int64_t clock = std::exchange(pull_clock_, -1);
  return Pull(clock, absl::MakeConstSpan(pull_params_), view_clock);
}

}  // namespace tessera::worker
