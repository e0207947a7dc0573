#ifndef TESSERA_WORKER_PARAMETER_CLIENT_H_
#define TESSERA_WORKER_PARAMETER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace tessera::worker {

// A worker's view of the parameter servers of one job: whole tensors in,
// whole tensors out. Implementations split each request by the servers that
// hold the tensors' slices. Used by one thread at a time.
class ParameterClient {
 public:
  virtual ~ParameterClient() = default;

  // Pushes the gradient of every tensor of the plan, in plan order, for `clock`.
  // REQUIRES: grads.size() == plan tensors, grads[i].size() == tensor i's size.
  virtual absl::Status Push(int64_t clock, absl::Span<const absl::Span<const float>> grads) = 0;

  // Reads every tensor of the plan, in plan order, as fresh as `clock` needs
  // under the job's consistency mode (sync: after `clock` steps). When
  // `view_clock` is not null it gets the read's view clock: every live
  // worker's pushes for clocks <= *view_clock are in `params` (-1: none
  // guaranteed); see PullChunk.view_clock.
  // REQUIRES: params.size() == plan tensors, params[i].size() == tensor i's size.
  virtual absl::Status Pull(int64_t clock, absl::Span<const absl::Span<float>> params,
                            int64_t* view_clock) = 0;
};

using ParameterClientFactory = std::function<absl::StatusOr<std::unique_ptr<ParameterClient>>(
    const std::string& job_id, int rank, const TensorPlan& plan)>;

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_PARAMETER_CLIENT_H_
