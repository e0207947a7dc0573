#ifndef TESSERA_WORKER_RPC_PS_CLIENT_H_
#define TESSERA_WORKER_RPC_PS_CLIENT_H_

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/chunk_codec.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.pb.h"
#include "worker/parameter_client.h"

namespace tessera {
class KeyedExecutor;
}  // namespace tessera

namespace tessera::worker {

struct PsClientOptions {
  absl::Duration push_timeout = absl::Seconds(60);
  // A sync pull waits for the slowest worker's push: allow for a slow step.
  absl::Duration pull_timeout = absl::Seconds(300);
  // Streams a push or a pull aims for, over all servers. With fewer servers
  // holding parameters than this, each server's share is striped over
  // ceil(streams / servers) channels, each its own TCP connection and stream
  // (stripes of at least kMinStripeBytes), so the copies on both sides and
  // the kernel's run in parallel instead of one after another. On the 2-core
  // development machine 2 beat 1 by 8-37% for one worker and one server
  // (1-64 MiB), and 4 lost to 2; with 2 servers, striping on top lost.
  int streams = 2;
  // A pull of this many float32 bytes or more is copied into the caller's
  // buffers with streaming stores (StreamingCopy, common/memory.h): buffers
  // this large do not stay in a core's cache for the step that reads them
  // anyway, and skipping the read for ownership of each destination line
  // saved 5-11% of the CPU per pulled byte at 16 and 64 MiB here
  // (benchmarks/results/pushpull/pushpull.md, item 36). Smaller pulls are
  // copied plainly and stay in the cache.
  uint64_t streamed_pull_bytes = uint64_t{4} << 20;
  // Pushes that may be unanswered at once: 1 or 2. With 2, FinishPush
  // returns once the push is written out (gRPC let go of the gradients) and
  // the push before it was answered, so the next push's chunks are on their
  // way while the servers take in the last ones and answer; the push's own
  // outcome comes from the next call that waits for it (see
  // ParameterClient::FinishPush). With 1, FinishPush waits for the answers.
  // Only a plan of at least overlapped_push_bytes (float32 bytes of all its
  // tensors) keeps a push in flight. Here that took the 8 and 16 MiB pushes
  // from 70% and 71% to 81% and 85% of raw TCP, was mixed at 4 MiB, and at 1
  // and 2 MiB cost 12-14% more CPU per byte: a server steps slices of up to
  // 4 MiB right after reading them, while the gradient is still in the
  // cache, and the next push arriving meanwhile pushes it out
  // (benchmarks/results/pushpull/pushpull.md, item 37).
  int pushes_in_flight = 2;
  uint64_t overlapped_push_bytes = uint64_t{8} << 20;
};

// The least payload a stripe carries: a smaller share stays one stream.
inline constexpr uint64_t kMinStripeBytes = uint64_t{256} << 10;
inline constexpr int kMaxStreams = 64;
// A server takes a push in at most kMaxPushParts (server/shard_store.h) = 16
// streams; stripes per server stay within that.
inline constexpr int kMaxChannelsPerServer = 16;

namespace internal {
class PayloadPins;
class PushStreamCall;
class PullStreamCall;
// Where a pull's values go: the plan's tensors by name (their index in plan
// order) and the caller's buffers.
struct PullTarget {
  const std::unordered_map<std::string, int>* index = nullptr;
  std::vector<absl::Span<float>> params;
  // Written with streaming stores (PsClientOptions::streamed_pull_bytes).
  bool stream = false;
};
}  // namespace internal

// ParameterClient over gRPC. Each request is split by server, all servers at
// once, and with fewer servers than options.streams a server's share is split
// again into stripes, one per channel (TCP connection) to it. Pushes go on one
// long-lived PushStream per stripe, each push's part ended by its last chunk,
// which carries end_of_push, and answered by the server (a failed push closes
// the stream; the next push opens a new one), and pulls likewise on one long-
// lived PullStream per stripe, each pull's last chunk marked end_of_pull (a
// failed pull closes the streams). Payload goes in chunks of at most
// kMaxChunkBytes; pieces under kBatchedPieceBytes go several to a message both
// ways (PushChunk.batch, PullChunk.batch), so a model of many small tensors
// does not pay a message per tensor. The server applies a striped push only
// once every stripe arrived whole (PushChunk.parts). One push may be unanswered
// while the next is sent (pushes_in_flight): its answers are waited for by the
// next FinishPush, StartPull or AwaitPushes, and the next push's chunks name it
// (PushChunk.prior_push_id) so the server keeps it open. The calls run on
// gRPC's callback API over raw byte buffers (common/rpc/chunk_codec.h): a
// float32 chunk that is not batched is pushed without a copy, gRPC writing the
// caller's gradient to the socket (a compressed one is encoded once into gRPC's
// buffer), and starts on its way while the caller goes on (PushTensor); a
// pulled chunk is decoded straight from gRPC's receive buffers into the
// parameters, on gRPC's threads, while the caller may compute (StartPull). With
// several stripes, each stripe after the first starts its writes from a thread
// of the client's own (gRPC copies a write to the socket on the thread that
// starts it), so a push's stripes go to the kernel on several cores at once.
// TOPK and ONEBIT pushes keep error feedback per tensor (what a push leaves out
// goes into the next one); TOPK keeps TopKRatioAt(compression, clock) of each
// chunk; with compression.precondition_on_worker the gradient is first divided
// by sqrt(v^) + eps of Adam's second moment, kept here.
// Used by one thread at a time.
class GrpcParameterClient : public ParameterClient {
 public:
  // Returns INVALID_ARGUMENT if the plan is inconsistent (overlapping or
  // missing slices, unknown tensors, precondition_on_worker without an adam
  // optimizer).
  static absl::StatusOr<std::unique_ptr<GrpcParameterClient>> Create(
      const std::string& job_id, int rank, const TensorPlan& plan,
      const PsClientOptions& options = {});
  ~GrpcParameterClient() override;

  absl::Status Push(int64_t clock, absl::Span<const absl::Span<const float>> grads) override;
  absl::Status Pull(int64_t clock, absl::Span<const absl::Span<float>> params,
                    int64_t* view_clock) override;

  absl::Status BeginPush(int64_t clock) override;
  absl::Status PushTensor(int tensor, absl::Span<const float> grad) override;
  absl::Status FinishPush() override;
  absl::Status AwaitPushes() override;
  absl::Status StartPull(int64_t clock, absl::Span<const absl::Span<float>> params) override;
  absl::Status FinishPull(int64_t* view_clock) override;

  // Payload bytes sent or asked for so far, and what they would have been in
  // float32: the effect of the job's compression. The destructor logs the
  // push share (info) when compression changed it.
  struct TransferBytes {
    uint64_t push_wire = 0, push_raw = 0, pull_wire = 0, pull_raw = 0;
  };
  TransferBytes transfer_bytes() const {
    return {push_wire_bytes_, push_raw_bytes_, pull_wire_bytes_, pull_raw_bytes_};
  }
  // gRPC messages written on push streams and read from pull streams so far
  // (answered pulls only): how well small pieces were batched.
  struct Messages {
    uint64_t push = 0, pull = 0;
  };
  Messages messages() const { return {push_messages_, pull_messages_}; }

 private:
  struct Piece {  // one slice of one tensor, held by one server
    int tensor;   // index in plan order
    uint64_t begin;
    uint64_t end;
  };
  struct Server {
    std::string address;
    std::vector<std::unique_ptr<grpc::GenericStub>> stubs;  // one per channel
    std::vector<Piece> pieces;
    uint64_t elements = 0;  // sum of the pieces' sizes
    int parts = 1;          // its stripes: the streams of each push and pull
  };
  // What one stream to one server carries: a run of the server's pieces.
  struct Stripe {
    size_t server;  // index in servers_
    int part;       // index among the server's stripes; also its channel
    std::vector<Piece> pieces;
    uint64_t elements;  // sum of the pieces' sizes
  };

  GrpcParameterClient(std::string job_id, int rank, const TensorPlan& plan,
                      const PsClientOptions& options);
  // The pieces of `server` in `channels` runs of about equal size (fewer when
  // a run would carry less than kMinStripeBytes), in order.
  static std::vector<std::vector<Piece>> Stripes(const Server& server, size_t channels);
  // A push that was written out but not yet answered (pushes_in_flight 2).
  struct Unanswered {
    int64_t clock;
    uint64_t push_id;
    std::vector<int64_t> answers;  // per push stream: the answers it must have had
    absl::Time deadline;
  };
  // Sets a push chunk's fields of the open push for `stripe` (job, worker,
  // clock, parts, push_id, prior_push_id).
  void SetPushFields(size_t stripe, PushChunk* chunk) const;
  // Writes the stripe's batch of small pieces, if it holds any.
  void FlushBatch(size_t stripe);
  // Waits for `push`'s answers on every stream (or its end, or the
  // deadline); the first failure, after which the push streams are closed.
  absl::Status AwaitAnswers(const Unanswered& push);
  // AwaitAnswers for the push in flight, if there is one.
  absl::Status AwaitUnanswered();
  // Waits for the push in flight, then closes the push streams, which
  // discards the open push (if any); the push in flight's outcome.
  absl::Status DiscardOpenPush();
  // Cancels the push (pull) streams; the next push (pull) opens new ones.
  // Cancelling discards the push in flight too: DiscardOpenPush waits for it
  // first; AwaitAnswers closes them only once it failed.
  void ClosePushStreams();
  void ClosePullStreams();

  // Constant after construction.
  const std::string job_id_;
  const int rank_;
  const PsClientOptions options_;
  internal::PayloadPins* const pins_;  // float32 pushes: gradient memory lent to gRPC
  std::vector<std::string> tensor_names_;
  std::unordered_map<std::string, int> tensor_index_;  // name -> index in plan order
  std::vector<uint64_t> tensor_sizes_;
  std::vector<Server> servers_;
  std::vector<Stripe> stripes_;  // every server's, in server order
  // For each tensor, (stripe index, piece) pairs holding it.
  std::vector<std::vector<std::pair<size_t, Piece>>> holders_;
  const CompressionSpec compression_;  // the plan's
  const OptimizerSpec optimizer_;      // the plan's
  std::vector<Compression> codecs_;    // per tensor (TensorCompression)
  std::vector<bool> preconditioned_;   // per tensor (PreconditionedOnWorker)

  // Compression: per-tensor error-feedback residuals (TOPK/ONEBIT; sized on
  // first use) and per-chunk scratch.
  std::vector<std::vector<float>> residuals_;
  // precondition_on_worker: per-tensor Adam second moment of this worker's
  // gradients (sized on first use), and the pushes it has seen (for its bias
  // correction; counted here, so a restarted worker starts afresh).
  std::vector<std::vector<float>> variances_;
  std::vector<int64_t> variance_steps_;
  std::vector<float> accumulated_, sent_;
  uint64_t push_wire_bytes_ = 0, push_raw_bytes_ = 0, pull_wire_bytes_ = 0, pull_raw_bytes_ = 0;
  uint64_t push_messages_ = 0, pull_messages_ = 0;

  // The push in progress and its state. Push ids are push_nonce_ (random
  // per client) plus a count.
  const uint64_t push_nonce_;
  uint64_t push_count_ = 0;
  uint64_t push_id_ = 0;
  int64_t push_clock_ = -1;
  // With several stripes, one thread per stripe after the first that
  // starts that stripe's writes (PushStreamCall); null with one.
  std::unique_ptr<KeyedExecutor> sender_;
  // One long-lived PushStream per stripe (null until used, or after it failed).
  std::vector<std::unique_ptr<internal::PushStreamCall>> push_streams_;
  bool push_open_ = false;  // between BeginPush and FinishPush
  bool keep_in_flight_ = false;  // pushes_in_flight 2 applies to this plan
  std::optional<Unanswered> unanswered_;  // the push before the open one
  std::vector<bool> pushed_;
  // Per stripe: its pieces not yet pushed, and its push's last chunk (the
  // one that ends its part), held back until FinishPush has seen every
  // tensor: a server that had it would apply its part of a push the caller
  // may yet leave incomplete, and a push applies everywhere or nowhere.
  std::vector<size_t> pieces_left_;
  std::vector<grpc::ByteBuffer> push_ends_;
  // Per stripe: the message of small pieces of the open push not yet
  // written (PushChunk.batch, up to kMaxBatchBytes), each encoded straight
  // into it.
  std::vector<BatchEncoder> batches_;
  // One long-lived PullStream per stripe (null until used, or after a
  // failed pull), whether a pull is outstanding on them, and where it writes.
  std::vector<std::unique_ptr<internal::PullStreamCall>> pull_streams_;
  bool pull_open_ = false;  // between StartPull and FinishPull
  internal::PullTarget pull_target_;
};

// A ParameterClientFactory that makes GrpcParameterClients.
ParameterClientFactory GrpcParameterClientFactory(const PsClientOptions& options = {});

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_RPC_PS_CLIENT_H_
