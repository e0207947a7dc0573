#ifndef TESSERA_WORKER_RPC_PS_CLIENT_H_
#define TESSERA_WORKER_RPC_PS_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/parameter_service.grpc.pb.h"
#include "worker/parameter_client.h"

namespace tessera::worker {

struct PsClientOptions {
  absl::Duration push_timeout = absl::Seconds(60);
  // A sync pull waits for the slowest worker's push: allow for a slow step.
  absl::Duration pull_timeout = absl::Seconds(300);
};

// ParameterClient over gRPC. Each request is split by server: one Push stream
// or one Pull call per server holding part of the model, all servers in
// parallel, payload in chunks of at most kMaxChunkBytes. Used by one thread.
class GrpcParameterClient : public ParameterClient {
 public:
  // Returns INVALID_ARGUMENT if the plan is inconsistent (overlapping or
  // missing slices, unknown tensors).
  static absl::StatusOr<std::unique_ptr<GrpcParameterClient>> Create(
      const std::string& job_id, int rank, const TensorPlan& plan,
      const PsClientOptions& options = {});

  absl::Status Push(int64_t clock, absl::Span<const absl::Span<const float>> grads) override;
  absl::Status Pull(int64_t clock, absl::Span<const absl::Span<float>> params,
                    int64_t* view_clock) override;

 private:
  struct Piece {  // one slice of one tensor, held by one server
    int tensor;   // index in plan order
    uint64_t begin;
    uint64_t end;
  };
  struct Server {
    std::string address;
    std::unique_ptr<ParameterService::Stub> stub;
    std::vector<Piece> pieces;
  };

  GrpcParameterClient(std::string job_id, int rank, const TensorPlan& plan,
                      const PsClientOptions& options);
  absl::Status PushTo(Server& server, int64_t clock,
                      absl::Span<const absl::Span<const float>> grads);
  absl::Status PullFrom(Server& server, int64_t clock, absl::Span<const absl::Span<float>> params,
                        int64_t* view_clock);

  const std::string job_id_;
  const int rank_;
  const PsClientOptions options_;
  std::vector<std::string> tensor_names_;
  std::vector<uint64_t> tensor_sizes_;
  std::vector<Server> servers_;
};

// A ParameterClientFactory that makes GrpcParameterClients.
ParameterClientFactory GrpcParameterClientFactory(const PsClientOptions& options = {});

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_RPC_PS_CLIENT_H_
