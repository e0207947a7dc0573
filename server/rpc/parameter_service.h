#ifndef TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_
#define TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_

#include <cstddef>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/blocking_pool.h"
#include "server/shard_store.h"

namespace tessera::server {

// Payload bytes of one pulled chunk. 512 KiB: with 2 servers x 2 workers on
// the 2-core machine (four pull streams at once), 64 MiB pulls ran at 3.82
// against 3.45 GB/s with 1 MiB pieces (means of 5 alternations side by side
// with 1x1, pushpull.md item 35), 1x1 level or better. Earlier, one stream per
// pull: 1 MiB pieces 71-72% of raw TCP at 16/64 MiB, 256 KiB pieces 60-73%.
inline constexpr size_t kPullPieceBytes = kMaxChunkBytes / 2;

// Pushed float32 chunks of at least this many bytes stay in gRPC's receive
// slices until the optimizer step reads them (PushSession::AddChunkHeld);
// smaller ones are copied into the staging buffer. A held chunk pins the
// whole receive buffers it lies in, so tiny chunks are not held: that
// bounds what a push pins to about its own size.
inline constexpr size_t kMinHeldChunkBytes = size_t{64} << 10;

// The gRPC face of a ShardStore. Thin: validates each request, calls the
// store, maps the status with ToGrpcStatus. Push, PushStream, Pull and PullStream use
// the callback API on raw byte buffers (common/rpc/chunk_codec.h): a pushed float32
// payload of kMinHeldChunkBytes or more stays in gRPC's receive slices until
// the optimizer step reads it (a smaller or compressed one is decoded into
// the slice's staging buffer), a pulled piece is copied from the slice
// straight into the outgoing buffer; the rest is synchronous.
//   Push, PushStream: the first chunk of a push fixes job/worker/clock (a
//         later chunk that differs is INVALID_ARGUMENT); each chunk, and
//         each piece batched in one (PushChunk.batch), is staged;
//         the push is committed when the client half-closes (Push) or sends
//         a chunk marked end_of_push (PushStream: the part's last chunk, or
//         a bare marker; the stream then answers and takes the next
//         push; a refused push ends it with the status); for a push striped
//         over `parts` streams, when the last of them does. A push is
//         discarded if a stream breaks or half-closes mid-push.
//   Pull: waits per the job's mode until the client's deadline, capped by
//         Options::max_pull_wait, then streams PullChunks of at most
//         kPullPieceBytes of payload, consecutive pieces under
//         kBatchedPieceBytes batched into one (PullChunk.batch, up to
//         kMaxBatchBytes; a lone one goes as a chunk of its own).
//   PullStream: the same for each PullRequest on a long-lived stream, the
//         wait bounded by the request's wait_ms (and max_pull_wait), the
//         pull's last chunk marked end_of_pull; a failed pull ends the
//         stream with its status.
// Thread-safe; `store` must outlive the service.
class ParameterServiceImpl final
    : public ParameterService::WithRawCallbackMethod_PullStream<
          ParameterService::WithRawCallbackMethod_PushStream<
              ParameterService::WithRawCallbackMethod_Pull<
                  ParameterService::WithRawCallbackMethod_Push<ParameterService::Service>>>> {
 public:
  struct Options {
    // Longest a pull waits for fresh data, whatever the client's deadline.
    absl::Duration max_pull_wait = absl::Seconds(120);
  };

  ParameterServiceImpl(ShardStore* store, Options options);
  // Waits for the threads of waiting pulls (ShardStore::Shutdown wakes them).
  ~ParameterServiceImpl() override;

  grpc::Status CreateJob(grpc::ServerContext* ctx, const CreateJobRequest* req,
                         CreateJobResponse* resp) override;
  grpc::Status DropJob(grpc::ServerContext* ctx, const DropJobRequest* req,
                       DropJobResponse* resp) override;
  grpc::Status SetLiveWorkers(grpc::ServerContext* ctx, const SetLiveWorkersRequest* req,
                              SetLiveWorkersResponse* resp) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* Push(grpc::CallbackServerContext* ctx,
                                                  grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Pull(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* request) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* PushStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* PullStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const ServerStatsRequest* req,
                     ServerStatsResponse* resp) override;

  // Runs `wait` (a pull that must wait for other workers) on a thread of its
  // own: an idle one of waiters_, else a new one. Used by Pull and PullStream.
  void RunWaiter(absl::AnyInvocable<void() &&> wait);

  // Cancels every open PushStream and PullStream (a worker's stream lives
  // from push to push or pull to pull, so a server that stops would
  // otherwise wait out its grace period for them) and every one opened
  // later. A push open on one is discarded.
  void CancelStreams();
  // Used by PushStream and PullStream: registers an open stream (cancelled
  // at once after CancelStreams), and forgets it once done.
  void AddStream(grpc::CallbackServerContext* ctx);
  void RemoveStream(grpc::CallbackServerContext* ctx);

 private:
  ShardStore* const store_;
  const Options options_;
  absl::Mutex streams_mu_;
  std::set<grpc::CallbackServerContext*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool streams_cancelled_ ABSL_GUARDED_BY(streams_mu_) = false;
  // Last, so destroyed first: the service outlives every waiting pull.
  BlockingPool waiters_;
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_RPC_PARAMETER_SERVICE_H_
