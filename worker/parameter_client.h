#ifndef TESSERA_WORKER_PARAMETER_CLIENT_H_
#define TESSERA_WORKER_PARAMETER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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

  // A push streamed tensor by tensor, so a worker can send a layer's gradient
  // as soon as backward produces it while the rest of backward runs:
  //   BeginPush(clock); PushTensor(i, grad_i) once per tensor of the plan, in
  //   any order; FinishPush() waits until every server has the whole push,
  //   or, in a client that keeps a push in flight (PsClientOptions::
  //   pushes_in_flight), until it is on its way and the push before it was
  //   answered.
  // Nothing is applied unless every tensor was pushed and the push is
  // answered OK (same all-or-nothing rule as Push). The spans given to
  // PushTensor must stay valid and unchanged until FinishPush returns. After
  // an error the stream is abandoned; the next BeginPush starts afresh.
  // A push still in flight is waited for by the next FinishPush, BeginPush
  // after an abandoned push, StartPull or Pull (a worker reads its own
  // pushes), and AwaitPushes; the first of them returns its error. A push a
  // server refused before it was on its way fails its own FinishPush.
  // The default implementation collects the spans and calls Push in
  // FinishPush; network clients override it to start sending at once.
  virtual absl::Status BeginPush(int64_t clock);
  virtual absl::Status PushTensor(int tensor, absl::Span<const float> grad);
  virtual absl::Status FinishPush();
  // Waits until every push FinishPush returned for is answered; its error if
  // one failed. The default has none in flight.
  virtual absl::Status AwaitPushes() { return absl::OkStatus(); }

  // A pull started now and waited for later, so it can run while the worker
  // computes: StartPull(clock, params) then FinishPull(view_clock), with the
  // meaning of Pull(clock, params, view_clock). `params` must stay valid and
  // untouched by the caller until FinishPull returns. At most one pull is
  // outstanding. The default implementation does the whole Pull in FinishPull.
  virtual absl::Status StartPull(int64_t clock, absl::Span<const absl::Span<float>> params);
  virtual absl::Status FinishPull(int64_t* view_clock);

 private:
  // State of the default streamed push.
  int64_t stream_clock_ = -1;
  std::vector<absl::Span<const float>> stream_grads_;
  std::vector<bool> stream_seen_;
  // State of the default started pull.
  int64_t pull_clock_ = -1;
  std::vector<absl::Span<float>> pull_params_;
};

using ParameterClientFactory = std::function<absl::StatusOr<std::unique_ptr<ParameterClient>>(
    const std::string& job_id, int rank, const TensorPlan& plan)>;

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_PARAMETER_CLIENT_H_
