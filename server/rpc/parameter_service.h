#ifndef TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_
#define TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/shard_store.h"

namespace tessera::server {

// The gRPC face of a ShardStore. Thin: validates each request, calls the
// store, maps the status with ToGrpcStatus. Push uses the callback API on raw
// byte buffers (each chunk's payload is decoded straight into the slice's
// staging buffer, see common/rpc/chunk_codec.h); the rest is synchronous.
//   Push: the first chunk fixes job/worker/clock (a later chunk that differs is
//         INVALID_ARGUMENT); each chunk is staged; the push is committed when
//         the client half-closes, and discarded if the stream breaks.
//   Pull: waits per the job's mode until the client's deadline, capped by
//         Options::max_pull_wait, then streams PullChunks of at most
//         kMaxChunkBytes of payload.
// Thread-safe; `store` must outlive the service.
class ParameterServiceImpl final
    : public ParameterService::WithRawCallbackMethod_Push<ParameterService::Service> {
 public:
  struct Options {
    // Longest a pull waits for fresh data, whatever the client's deadline.
    absl::Duration max_pull_wait = absl::Seconds(120);
  };

  ParameterServiceImpl(ShardStore* store, Options options);

  grpc::Status CreateJob(grpc::ServerContext* ctx, const CreateJobRequest* req,
                         CreateJobResponse* resp) override;
  grpc::Status DropJob(grpc::ServerContext* ctx, const DropJobRequest* req,
                       DropJobResponse* resp) override;
  grpc::Status SetLiveWorkers(grpc::ServerContext* ctx, const SetLiveWorkersRequest* req,
                              SetLiveWorkersResponse* resp) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* Push(grpc::CallbackServerContext* ctx,
                                                  grpc::ByteBuffer* response) override;
  grpc::Status Pull(grpc::ServerContext* ctx, const PullRequest* req,
                    grpc::ServerWriter<PullChunk>* writer) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const ServerStatsRequest* req,
                     ServerStatsResponse* resp) override;

 private:
  ShardStore* const store_;
  const Options options_;
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_
