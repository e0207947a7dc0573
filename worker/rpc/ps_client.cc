#include "worker/rpc/ps_client.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <random>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/job_spec.h"
#include "common/keyed_executor.h"
#include "common/range.h"
#include "common/rpc/chunk_codec.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"
#include "kernels/compress.h"
#include "proto/parameter_service.pb.h"
#include "spdlog/spdlog.h"

namespace tessera::worker {
namespace internal {
namespace {

constexpr char kPushStreamMethod[] = "/tessera.ParameterService/PushStream";
constexpr char kPullStreamMethod[] = "/tessera.ParameterService/PullStream";

// The end of one call, shared by its reactor and the thread that waits, so
// the reactor's last action (in OnDone) touches nothing the waiter frees.
class CallDone {
 public:
  void Set(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }
  grpc::Status Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// Counts the payload slices that point into the caller's gradients (pushed
// without a copy) and are still referenced by gRPC. Reference counted: the
// owner holds one reference and each live slice one, so a slice released
// late, even after its client is gone, never touches freed memory.
class PayloadPins {
 public:
  static PayloadPins* Create() { return new PayloadPins(); }

  // A slice over `bytes` of the caller's memory; gRPC's release of it is counted.
  grpc::Slice Pin(const void* data, size_t bytes) {
    {
      absl::MutexLock lock(&mu_);
      ++refs_;
    }
    return grpc::Slice(const_cast<void*>(data), bytes, &PayloadPins::Released, this);
  }

  // Waits until gRPC holds no pinned slice; false if some are still held at
  // `deadline`.
  bool AwaitReleased(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto only_owner = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return refs_ == 1; };
    return mu_.AwaitWithDeadline(absl::Condition(&only_owner), deadline);
  }

  // The owner's reference.
  void Drop() { Unref(); }

 private:
  PayloadPins() = default;
  static void Released(void* pins) { static_cast<PayloadPins*>(pins)->Unref(); }
  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  absl::Mutex mu_;
  int64_t refs_ ABSL_GUARDED_BY(mu_) = 1;
};

// One long-lived PushStream to one server (one stripe's channel), used by
// push after push. Chunks queue up as the caller encodes them and are written
// one at a time (gRPC allows one write in flight per stream). A write that
// starts outside a reaction goes out from the caller's thread, or from the
// `sender` thread for `key` when one is given (gRPC sends it to the socket
// on the thread that starts it), so the stripes of a push are copied to the
// kernel on several cores at once; later writes start from the reaction to
// the write before. EndPush() queues the push's last chunk (its end_of_push
// set), and the server answers each push with one PushResponse. A push the
// server refuses ends the stream with its status; so does a broken
// connection. A hold keeps the call open between pushes: Close() cancels the
// stream (discarding a push still open on it) and returns its status once
// gRPC is done with it. Thread-safe.
class PushStreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  PushStreamCall(grpc::GenericStub* stub, KeyedExecutor* sender, uint64_t key)
      : sender_(sender), key_(key), done_(std::make_shared<CallDone>()) {
    stub->PrepareBidiStreamingCall(&ctx_, kPushStreamMethod, grpc::StubOptions(), this);
    AddHold();
    StartRead(&response_);
    StartCall();
  }

  void Write(grpc::ByteBuffer chunk) {
    bool idle;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;  // Await() says so
      queue_.push_back(std::move(chunk));
      idle = !writing_;  // else OnWriteDone starts it
    }
    if (sender_ == nullptr) {
      Pump();
    } else if (idle) {
      sender_->Submit(key_, [this] { Pump(); });  // Close() waits for it
    }
  }

  // Queues `last`, the chunk that ends the current push (end_of_push set);
  // returns how many answers the stream must have had once this push is
  // answered.
  int64_t EndPush(grpc::ByteBuffer last) {
    Write(std::move(last));
    absl::MutexLock lock(&mu_);
    return ++pushes_;
  }

  enum class Outcome { kAnswered, kEnded, kTimedOut };
  // Waits until the stream has had `answers` answers, has ended, or `deadline`.
  Outcome Await(int64_t answers, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto settled = [this, answers]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return answers_ >= answers || ended_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&settled), deadline)) return Outcome::kTimedOut;
    return answers_ >= answers ? Outcome::kAnswered : Outcome::kEnded;
  }

  // Whether the stream has ended (a refused push or a broken connection).
  bool ended() {
    absl::MutexLock lock(&mu_);
    return ended_;
  }

  // Cancels the stream unless it already ended, then waits for gRPC to be
  // done with it and returns its status. Once, from the caller's thread:
  // it and the sender are the only ones that start writes outside
  // reactions, so once the sender ran what it has of this stream none starts
  // after it.
  grpc::Status Close() {
    if (sender_ != nullptr) {
      absl::Notification drained;
      sender_->Submit(key_, [&drained] { drained.Notify(); });
      drained.WaitForNotification();
    }
    ctx_.TryCancel();
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      queue_.clear();
    }
    RemoveHold();
    return done_->Wait();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!queue_.empty()) queue_.pop_front();
      if (!ok) {
        ended_ = true;
        queue_.clear();
      }
    }
    Pump();
  }
  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        ended_ = true;  // the server finished the stream, or it broke
        return;
      }
      ++answers_;
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<CallDone> done = done_;
    done->Set(status);  // `this` may be gone once Set returns
  }

 private:
  // Starts the next write. Never holds mu_ across a gRPC call: a reaction
  // may run inline.
  void Pump() {
    const grpc::ByteBuffer* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || ended_ || queue_.empty()) return;
      writing_ = true;
      next = &queue_.front();  // a deque keeps it in place while others queue up
    }
    StartWrite(next);
  }

  KeyedExecutor* const sender_;  // null: writes start on the caller's thread
  const uint64_t key_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer response_;
  const std::shared_ptr<CallDone> done_;
  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a StartWrite is in flight
  bool ended_ ABSL_GUARDED_BY(mu_) = false;    // no more answers will come
  int64_t pushes_ ABSL_GUARDED_BY(mu_) = 0;    // end markers queued
  int64_t answers_ ABSL_GUARDED_BY(mu_) = 0;   // PushResponses received
};

namespace {

// Decodes one pulled piece (`header` and its payload) straight into
// `target` and adds its elements to *received. `narrow` is scratch for a
// 16-bit piece. DATA_LOSS for a piece that does not fit the target.
absl::Status DecodePullPiece(const PullChunk& header, ChunkPayload& payload,
                             const PullTarget& target, std::string* narrow, uint64_t* received) {
  const auto it = target.index->find(header.tensor());
  const bool narrowed = header.encoding() != COMPRESSION_NONE;
  const size_t width = narrowed ? 2 : sizeof(float);
  const size_t n = payload.size() / width;
  if ((narrowed && header.encoding() != COMPRESSION_FP16 &&
       header.encoding() != COMPRESSION_BF16) ||
      it == target.index->end() || payload.size() % width != 0 ||
      header.offset() > target.params[it->second].size() ||
      n > target.params[it->second].size() - header.offset()) {
    return absl::DataLossError(absl::StrCat("malformed ", CompressionName(header.encoding()),
                                            " chunk for tensor '", header.tensor(),
                                            "' at offset ", header.offset()));
  }
  float* dst = target.params[it->second].data() + header.offset();
  if (!narrowed) {
    char* out = reinterpret_cast<char*>(dst);
    TESSERA_RETURN_IF_ERROR(target.stream ? payload.StreamTo(out) : payload.ReadTo(out));
  } else {
    // A 16-bit piece (FP16/BF16): read whole, widened into the parameters.
    narrow->resize(payload.size());
    TESSERA_RETURN_IF_ERROR(payload.ReadTo(narrow->data()));
    if (!kernels::DecodePayload(static_cast<kernels::Codec>(header.encoding()), narrow->data(),
                                narrow->size(), static_cast<int64_t>(n), header.scale(), dst)) {
      return absl::DataLossError(absl::StrCat("bad scale ", header.scale(), " in the ",
                                              CompressionName(header.encoding()),
                                              " chunk for tensor '", header.tensor(), "'"));
    }
  }
  *received += n;
  return absl::OkStatus();
}

// Decodes one pulled chunk straight into `target`: its batched pieces
// (PullChunk.batch), then its own piece, if any; adds their elements to
// *received, lowers *view_clock to its view clock, and says in *end whether
// it ended its pull (end_of_pull). `entry` is scratch. DATA_LOSS for a chunk
// that does not fit the target.
absl::Status DecodePullChunk(grpc::ByteBuffer* chunk, const PullTarget& target, PullChunk* entry,
                             std::string* narrow, uint64_t* received, int64_t* view_clock,
                             bool* end) {
  PullChunk header;
  int entries = 0;
  return DecodeBatchedChunk(
      chunk, &header, PullChunk::kValuesFieldNumber, entry, PullChunk::kBatchFieldNumber,
      [&](ChunkPayload& payload) -> absl::Status {
        if (entry->view_clock() != 0 || entry->end_of_pull() || entry->batch_size() > 0) {
          return absl::DataLossError(absl::StrCat("malformed batch entry ", entries,
                                                  " for tensor '", entry->tensor(),
                                                  "': it sets fields of the pull"));
        }
        ++entries;
        return DecodePullPiece(*entry, payload, target, narrow, received);
      },
      [&](ChunkPayload& payload) -> absl::Status {
        if (!header.tensor().empty() || payload.size() > 0 || entries == 0) {
          TESSERA_RETURN_IF_ERROR(DecodePullPiece(header, payload, target, narrow, received));
        }
        *view_clock = std::min(*view_clock, header.view_clock());
        *end = header.end_of_pull();
        return absl::OkStatus();
      });
}

}  // namespace

// One long-lived PullStream to one server (one stripe's channel), used by
// pull after pull. Start() writes a PullRequest; its chunks are decoded on
// gRPC's threads straight into the target, and the chunk marked end_of_pull
// answers it. A pull the server refuses ends the stream with its status; so
// does a broken connection or a chunk that does not fit (DATA_LOSS, kept in
// error()). A hold keeps the call open between pulls: Close() cancels the
// stream and returns its status once gRPC is done with it. Thread-safe.
class PullStreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit PullStreamCall(grpc::GenericStub* stub) : done_(std::make_shared<CallDone>()) {
    stub->PrepareBidiStreamingCall(&ctx_, kPullStreamMethod, grpc::StubOptions(), this);
    AddHold();
    StartRead(&chunk_);
    StartCall();
  }

  // Asks for one pull into `target`, which must stay valid until Await()
  // says it is answered or the stream ended. One pull at a time.
  void Start(const PullRequest& request, const PullTarget* target) {
    {
      absl::MutexLock lock(&mu_);
      // The last request's write may complete after its answer came.
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_ || ended_; };
      mu_.Await(absl::Condition(&idle));
      target_ = target;
      received_ = 0;
      messages_ = 0;
      view_clock_ = std::numeric_limits<int64_t>::max();
      pulling_ = true;
      if (ended_) return;  // Await() says so
      request_ = MessageBuffer(request);
      writing_ = true;
    }
    StartWrite(&request_);
  }

  // Whether the stream has ended (a refused pull or a broken connection).
  bool ended() {
    absl::MutexLock lock(&mu_);
    return ended_;
  }

  enum class Outcome { kAnswered, kEnded, kTimedOut };
  // Waits until the pull is answered, the stream has ended, or `deadline`.
  Outcome Await(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !pulling_ || ended_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&settled), deadline)) return Outcome::kTimedOut;
    return pulling_ ? Outcome::kEnded : Outcome::kAnswered;
  }
  // The answered pull's values received, messages read, and view clock.
  uint64_t received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  uint64_t messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  int64_t view_clock() {
    absl::MutexLock lock(&mu_);
    return view_clock_;
  }
  // A chunk that did not fit ended the stream (OK otherwise).
  absl::Status error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

  // Cancels the stream unless it already ended, then waits for gRPC to be
  // done with it and returns its status. Once.
  grpc::Status Close() {
    ctx_.TryCancel();
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
    }
    RemoveHold();
    return done_->Wait();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) ended_ = true;
  }
  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok || ended_) {
        ended_ = true;  // the server finished the stream, it broke, or Close() cancelled it
        return;
      }
      // Decoded under the lock: Start() may not retarget meanwhile. Only the
      // waiting caller contends, and it sleeps until the pull settles.
      bool end = false;
      absl::Status st =
          pulling_ ? DecodePullChunk(&chunk_, *target_, &entry_, &narrow_, &received_,
                                     &view_clock_, &end)
                   : absl::DataLossError("a chunk with no pull asked for");
      chunk_.Clear();
      ++messages_;
      if (!st.ok()) {
        error_ = st;
        ended_ = true;
        ctx_.TryCancel();
        return;
      }
      if (end) pulling_ = false;
    }
    StartRead(&chunk_);
  }
  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<CallDone> done = done_;
    done->Set(status);  // `this` may be gone once Set returns
  }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;  // the write in flight (one per pull)
  grpc::ByteBuffer chunk_;    // the read in flight
  const std::shared_ptr<CallDone> done_;
  absl::Mutex mu_;
  const PullTarget* target_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string narrow_ ABSL_GUARDED_BY(mu_);  // a 16-bit chunk's payload, reused
  PullChunk entry_ ABSL_GUARDED_BY(mu_);     // a batch entry being decoded, reused
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a request's StartWrite is in flight
  bool pulling_ ABSL_GUARDED_BY(mu_) = false;  // a pull is asked for and not yet answered
  bool ended_ ABSL_GUARDED_BY(mu_) = false;    // no more chunks will come
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t view_clock_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<int64_t>::max();
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

namespace {
constexpr uint64_t kFloatsPerChunk = kMaxChunkBytes / sizeof(float);
// How long a push waits for gRPC to let go of gradient memory.
constexpr absl::Duration kPinGrace = absl::Seconds(5);
// How often that wait, with a push in flight, looks for a stream that ended.
constexpr absl::Duration kPinPoll = absl::Milliseconds(10);
// How long past pull_timeout a pull waits for the server's answer (which
// names the workers it waited for) before it gives up on its own.
constexpr absl::Duration kPullAnswerGrace = absl::Seconds(5);
}  // namespace

absl::StatusOr<std::unique_ptr<GrpcParameterClient>> GrpcParameterClient::Create(
    const std::string& job_id, int rank, const TensorPlan& plan, const PsClientOptions& options) {
  // Validate: every element of every tensor is held by exactly one server.
  std::vector<std::vector<Range>> covered(plan.tensors_size());
  std::vector<std::string> names;
  std::unordered_map<std::string, size_t> index;
  for (const TensorSpec& t : plan.tensors()) {
    if (!index.emplace(t.name(), names.size()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan: tensor '", t.name(), "' is listed twice"));
    }
    names.push_back(t.name());
  }
  for (const ServerSlices& s : plan.servers()) {
    if (s.address().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("plan: server ", s.server_id(), " has no address"));
    }
    for (const TensorSlice& slice : s.slices()) {
      const auto it = index.find(slice.tensor());
      if (it == index.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("plan: server ", s.address(), " holds unknown tensor '", slice.tensor(), "'"));
      }
      const size_t t = it->second;
      if (slice.begin() >= slice.end() || slice.end() > plan.tensors(t).size()) {
        return absl::InvalidArgumentError(absl::StrCat("plan: bad slice [", slice.begin(), ", ",
                                                       slice.end(), ") of '", slice.tensor(), "'"));
      }
      covered[t].push_back(Range{slice.begin(), slice.end()});
    }
  }
  for (size_t t = 0; t < covered.size(); ++t) {
    auto& ranges = covered[t];
    std::sort(ranges.begin(), ranges.end(),
              [](const Range& a, const Range& b) { return a.begin < b.begin; });
    uint64_t next = 0;
    for (const Range& r : ranges) {
      if (r.begin != next) break;
      next = r.end;
    }
    if (next != plan.tensors(t).size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "plan: slices of '", names[t], "' do not cover it exactly once (", plan.tensors(t).size(),
          " elements)"));
    }
  }
  TESSERA_RETURN_IF_ERROR_CTX(CheckPreconditioning(plan.compression(), plan.optimizer()), "plan");
  if (options.streams < 1 || options.streams > kMaxStreams) {
    return absl::InvalidArgumentError(
        absl::StrCat("streams is ", options.streams, "; want 1..", kMaxStreams));
  }
  if (options.pushes_in_flight < 1 || options.pushes_in_flight > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("pushes_in_flight is ", options.pushes_in_flight, "; want 1 or 2"));
  }
  return std::unique_ptr<GrpcParameterClient>(
      new GrpcParameterClient(job_id, rank, plan, options));
}

GrpcParameterClient::GrpcParameterClient(std::string job_id, int rank, const TensorPlan& plan,
                                         const PsClientOptions& options)
    : job_id_(std::move(job_id)),
      rank_(rank),
      options_(options),
      pins_(internal::PayloadPins::Create()),
      compression_(plan.compression()),
      optimizer_(plan.optimizer()),
      push_nonce_([] {
        std::random_device rd;
        return (uint64_t{rd()} << 32) ^ rd();
      }()) {
  uint64_t plan_bytes = 0;
  for (const TensorSpec& t : plan.tensors()) {
    tensor_index_.emplace(t.name(), static_cast<int>(tensor_names_.size()));
    tensor_names_.push_back(t.name());
    tensor_sizes_.push_back(t.size());
    plan_bytes += t.size() * sizeof(float);
  }
  keep_in_flight_ = options.pushes_in_flight == 2 && plan_bytes >= options.overlapped_push_bytes;
  holders_.resize(tensor_names_.size());
  for (const TensorSpec& t : plan.tensors()) {
    codecs_.push_back(TensorCompression(plan.compression(), t));
  }
  residuals_.resize(tensor_names_.size());
  for (const TensorSpec& t : plan.tensors()) {
    preconditioned_.push_back(PreconditionedOnWorker(plan.compression(), t));
  }
  variances_.resize(tensor_names_.size());
  variance_steps_.assign(tensor_names_.size(), 0);
  for (const ServerSlices& s : plan.servers()) {
    if (s.slices_size() == 0) continue;
    Server server;
    server.address = s.address();
    for (const TensorSlice& slice : s.slices()) {
      const int t = tensor_index_.at(slice.tensor());  // Create checked it
      const Piece piece{t, slice.begin(), slice.end()};
      server.pieces.push_back(piece);
      server.elements += piece.end - piece.begin;
    }
    servers_.push_back(std::move(server));
  }
  const size_t channels =
      servers_.empty() ? 1
                       : std::min<size_t>(kMaxChannelsPerServer,
                                          (options.streams + servers_.size() - 1) / servers_.size());
  for (size_t i = 0; i < servers_.size(); ++i) {
    std::vector<std::vector<Piece>> runs = Stripes(servers_[i], channels);
    servers_[i].parts = static_cast<int>(runs.size());
    for (size_t k = 0; k < runs.size(); ++k) {
      servers_[i].stubs.push_back(
          std::make_unique<grpc::GenericStub>(MakeChannel(servers_[i].address)));
    }
    for (size_t k = 0; k < runs.size(); ++k) {
      uint64_t elements = 0;
      for (const Piece& piece : runs[k]) {
        holders_[piece.tensor].emplace_back(stripes_.size(), piece);
        elements += piece.end - piece.begin;
      }
      stripes_.push_back(Stripe{i, static_cast<int>(k), std::move(runs[k]), elements});
    }
  }
  if (stripes_.size() > 1) {
    sender_ = std::make_unique<KeyedExecutor>(static_cast<int>(stripes_.size()) - 1);
  }
  for (size_t i = 0; i < stripes_.size(); ++i) {
    batches_.emplace_back(PushChunk::kBatchFieldNumber, PushChunk::kValuesFieldNumber,
                          kMaxBatchBytes + 1024);
  }
}

GrpcParameterClient::~GrpcParameterClient() {
  if (push_wire_bytes_ != push_raw_bytes_) {
    spdlog::info("job {} rank {}: pushed {} payload bytes for {} float32 bytes ({:.2f}%)", job_id_,
                 rank_, push_wire_bytes_, push_raw_bytes_,
                 100.0 * static_cast<double>(push_wire_bytes_) / push_raw_bytes_);
  }
  // Push streams end cancelled (a push the caller gave up on applies nothing).
  if (absl::Status st = DiscardOpenPush(); !st.ok()) {
    spdlog::warn("job {} rank {}: the last push failed: {}", job_id_, rank_, st.ToString());
  }
  ClosePullStreams();
  // The caller may free its gradients once we return: give gRPC its grace to
  // let go of them; slices it still holds after that keep the counter alive.
  pins_->AwaitReleased(absl::Now() + kPinGrace);
  pins_->Drop();
}

absl::Status GrpcParameterClient::BeginPush(int64_t clock) {
  if (clock < 0) return absl::InvalidArgumentError(absl::StrCat("push at clock ", clock));
  // An abandoned push: cancelling its streams discards it on the servers.
  if (push_open_) {
    push_open_ = false;
    TESSERA_RETURN_IF_ERROR(DiscardOpenPush());
  }
  // A stream that broke since the last push is replaced below: first the
  // push in flight on it gets its answer or its error.
  if (unanswered_.has_value()) {
    for (const auto& stream : push_streams_) {
      if (stream != nullptr && stream->ended()) {
        TESSERA_RETURN_IF_ERROR(AwaitUnanswered());
        break;
      }
    }
  }
  push_clock_ = clock;
  push_id_ = push_nonce_ + ++push_count_;
  pushed_.assign(tensor_names_.size(), false);
  pieces_left_.resize(stripes_.size());
  for (size_t i = 0; i < stripes_.size(); ++i) pieces_left_[i] = stripes_[i].pieces.size();
  push_ends_.assign(stripes_.size(), grpc::ByteBuffer());
  for (BatchEncoder& batch : batches_) batch.Clear();  // what an abandoned push left
  push_streams_.resize(stripes_.size());
  for (size_t i = 0; i < stripes_.size(); ++i) {
    auto& stream = push_streams_[i];
    if (stream != nullptr && stream->ended()) {  // broke since the last push
      stream->Close();
      stream.reset();
    }
    if (stream == nullptr) {
      const Stripe& stripe = stripes_[i];
      // Stripe 0 writes from the caller's thread, each other from its own
      // sender thread (keys 1..n-1 over n-1 threads: one each).
      KeyedExecutor* const sender = i == 0 ? nullptr : sender_.get();
      stream = std::make_unique<internal::PushStreamCall>(
          servers_[stripe.server].stubs[stripe.part].get(), sender, i);
    }
  }
  push_open_ = true;
  return absl::OkStatus();
}

absl::Status GrpcParameterClient::PushTensor(int tensor, absl::Span<const float> grad) {
  if (!push_open_) return absl::FailedPreconditionError("PushTensor without BeginPush");
  if (tensor < 0 || static_cast<size_t>(tensor) >= tensor_names_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("push of tensor ", tensor, "; the plan has ", tensor_names_.size()));
  }
  if (grad.size() != tensor_sizes_[tensor]) {
    return absl::InvalidArgumentError(absl::StrCat("push of '", tensor_names_[tensor], "': ",
                                                   grad.size(), " values, expected ",
                                                   tensor_sizes_[tensor]));
  }
  if (pushed_[tensor]) {
    return absl::InvalidArgumentError(
        absl::StrCat("push of '", tensor_names_[tensor], "' twice at clock ", push_clock_));
  }
  pushed_[tensor] = true;
  const Compression codec = codecs_[tensor];
  PushChunk header;
  header.set_tensor(tensor_names_[tensor]);
  header.set_encoding(codec);
  // TOPK and ONEBIT send an approximation: what they leave out of this push
  // is carried into the next one (error feedback).
  const bool feedback = codec == COMPRESSION_TOPK || codec == COMPRESSION_ONEBIT;
  const double topk_ratio = TopKRatioAt(compression_, push_clock_);  // warm-up, then topk_ratio
  std::vector<float>& residual = residuals_[tensor];
  if (feedback && residual.empty()) residual.assign(grad.size(), 0.0f);
  // precondition_on_worker: Adam's second moment is kept here and the push
  // carries g / (sqrt(v^) + eps); the servers apply w -= lr * g.
  const bool precondition = feedback && preconditioned_[tensor];
  std::vector<float>& variance = variances_[tensor];
  const float b2 = optimizer_.beta2();
  const float eps = optimizer_.epsilon();
  float bc2 = 1.0f;
  if (precondition) {
    if (variance.empty()) variance.assign(grad.size(), 0.0f);
    const int64_t t = ++variance_steps_[tensor];
    bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(b2), static_cast<double>(t)));
  }
  // Last stripe first: stripe 0 writes on this thread (gRPC sends inline),
  // so the senders' stripes are on their way before it blocks here.
  for (auto holder = holders_[tensor].rbegin(); holder != holders_[tensor].rend(); ++holder) {
    const auto& [stripe, piece] = *holder;
    // The stripe's last chunk of this push ends it (no marker of its own);
    // FinishPush sends it.
    const bool ends_stripe = --pieces_left_[stripe] == 0;
    // A small piece joins the stripe's batch (one chunk: under
    // kBatchedPieceBytes); a larger one goes after the batch so far.
    const bool batched = (piece.end - piece.begin) * sizeof(float) < kBatchedPieceBytes;
    if (!batched) {
      FlushBatch(stripe);
      SetPushFields(stripe, &header);  // its chunks go on their own
    }
    internal::PushStreamCall& stream = *push_streams_[stripe];
    for (uint64_t off = piece.begin; off < piece.end; off += kFloatsPerChunk) {
      const uint64_t n = std::min<uint64_t>(kFloatsPerChunk, piece.end - off);
      const bool last = ends_stripe && off + n == piece.end;
      const float* values = grad.data() + off;
      if (feedback) {
        accumulated_.resize(n);
        sent_.resize(n);
        if (precondition) {
          float* v = variance.data() + off;
          for (uint64_t i = 0; i < n; ++i) {
            v[i] = b2 * v[i] + (1.0f - b2) * values[i] * values[i];
            accumulated_[i] = values[i] / (std::sqrt(v[i] / bc2) + eps) + residual[off + i];
          }
        } else {
          for (uint64_t i = 0; i < n; ++i) accumulated_[i] = values[i] + residual[off + i];
        }
        values = accumulated_.data();
      }
      const auto kcodec = static_cast<kernels::Codec>(codec);
      const int64_t k = codec == COMPRESSION_TOPK ? kernels::TopKCount(n, topk_ratio) : 0;
      const size_t bytes = kernels::PayloadBytes(kcodec, n, k);
      // The scale goes in the header, which precedes the payload.
      const float scale = kernels::PayloadScale(kcodec, values, n);
      // Writes the payload; TOPK and ONEBIT keep what it left out.
      auto encode = [&](char* dst) {
        if (codec == COMPRESSION_NONE) {
          std::memcpy(dst, values, bytes);
          return;
        }
        kernels::EncodePayload(kcodec, values, n, k, scale, dst, feedback ? sent_.data() : nullptr);
        if (feedback) {
          for (uint64_t i = 0; i < n; ++i) residual[off + i] = accumulated_[i] - sent_[i];
        }
      };
      push_wire_bytes_ += bytes;
      push_raw_bytes_ += n * sizeof(float);
      if (batched) {
        // Encoded straight into the stripe's next message.
        PushChunk entry;
        entry.set_tensor(tensor_names_[tensor]);
        entry.set_offset(off);
        entry.set_encoding(codec);
        if (feedback) entry.set_elements(n);
        entry.set_scale(scale);
        BatchEncoder& batch = batches_[stripe];
        if (batch.entries() > 0 && batch.SizeWith(entry, bytes) > kMaxBatchBytes) {
          FlushBatch(stripe);
        }
        PushChunk fields;
        if (batch.entries() == 0) SetPushFields(stripe, &fields);
        batch.Add(fields, entry, bytes, encode);
        if (last) {
          PushChunk end;
          end.set_end_of_push(true);
          push_ends_[stripe] = batch.Finish(end);
        }
        continue;
      }
      header.set_offset(off);
      header.set_end_of_push(last);
      header.set_scale(scale);
      if (feedback) header.set_elements(n);
      // The gradient itself is a float32 payload: gRPC writes it to the
      // socket from here, and FinishPush waits until gRPC lets go of it.
      grpc::ByteBuffer chunk =
          codec == COMPRESSION_NONE
              ? EncodeChunkAround(header, PushChunk::kValuesFieldNumber, pins_->Pin(values, bytes))
              : EncodeChunk(header, PushChunk::kValuesFieldNumber, bytes, encode);
      if (last) {
        push_ends_[stripe].Swap(&chunk);
      } else {
        stream.Write(std::move(chunk));
        ++push_messages_;
      }
    }
  }
  return absl::OkStatus();
}

void GrpcParameterClient::SetPushFields(size_t stripe, PushChunk* chunk) const {
  const int parts = servers_[stripes_[stripe].server].parts;
  chunk->set_job_id(job_id_);
  chunk->set_worker(rank_);
  chunk->set_clock(push_clock_);
  chunk->set_parts(parts > 1 ? parts : 0);
  chunk->set_push_id(parts > 1 ? push_id_ : 0);
  // The push before, if not yet answered: the server keeps it open.
  chunk->set_prior_push_id(parts > 1 && unanswered_.has_value() ? unanswered_->push_id : 0);
}

void GrpcParameterClient::FlushBatch(size_t stripe) {
  if (batches_[stripe].entries() == 0) return;
  push_streams_[stripe]->Write(batches_[stripe].Finish(PushChunk()));
  ++push_messages_;
}

absl::Status GrpcParameterClient::FinishPush() {
  if (!push_open_) return absl::FailedPreconditionError("FinishPush without BeginPush");
  push_open_ = false;
  const auto missing = std::find(pushed_.begin(), pushed_.end(), false);
  if (missing != pushed_.end()) {
    const absl::Status before = DiscardOpenPush();  // discards what was sent
    pins_->AwaitReleased(absl::Now() + kPinGrace);  // the caller may free its gradients now
    TESSERA_RETURN_IF_ERROR(before);
    return absl::InvalidArgumentError(
        absl::StrCat("push at clock ", push_clock_, ": tensor '",
                     tensor_names_[missing - pushed_.begin()], "' was not pushed; nothing applied"));
  }
  // Every tensor was pushed, so every stripe holds the last chunk that ends
  // its part (a stripe's pieces are never empty: Create checks the plan's
  // slices); each EndPush says which answer to wait for on its stream.
  // Last stripe first, as in PushTensor.
  Unanswered push{push_clock_, push_id_, std::vector<int64_t>(push_streams_.size()),
                  absl::Now() + options_.push_timeout};
  for (size_t i = push_streams_.size(); i-- > 0;) {
    push.answers[i] = push_streams_[i]->EndPush(std::move(push_ends_[i]));
  }
  push_messages_ += push_streams_.size();
  // grpc::ByteBuffer has no move: the held copies still reference the
  // gradients until they go.
  push_ends_.clear();
  // The push before this one is answered first (a stream's answers come in
  // order). If it failed, the streams were closed, which cancelled this one.
  absl::Status first = AwaitUnanswered();
  if (!first.ok()) {
    first = absl::Status(first.code(),
                         absl::StrCat(first.message(), "; the push at clock ", push.clock,
                                      ", sent after it, was cancelled where it was not yet whole"));
  } else if (!keep_in_flight_) {
    first = AwaitAnswers(push);
  } else {
    unanswered_ = std::move(push);
  }
  // The transport lets go of the gradients once it has written them: with
  // the push answered, the servers have every chunk; otherwise this waits
  // for the writes, which the servers' flow control paces. A push not even
  // written out by its deadline failed (a server that does not read):
  // waiting for it closes its streams, which lets go of the gradients. A
  // broken connection may keep unsent frames of a dead stream a little
  // longer: those bytes go nowhere, so the caller may go on.
  // A stream the server ended (it refused the push) may keep the frames it
  // had queued until the call is cancelled: the push in flight then fails
  // now, which closes its streams, instead of after the whole wait.
  const absl::Time grace = absl::Now() + kPinGrace;
  const absl::Time until =
      unanswered_.has_value() ? std::min(unanswered_->deadline, grace) : grace;
  bool released = false;
  while (true) {
    released = pins_->AwaitReleased(std::min(until, absl::Now() + kPinPoll));
    if (released || absl::Now() >= until || !unanswered_.has_value()) break;
    if (std::any_of(push_streams_.begin(), push_streams_.end(),
                    [](const auto& stream) { return stream != nullptr && stream->ended(); })) {
      break;
    }
  }
  if (!released && unanswered_.has_value()) {
    first = AwaitUnanswered();
    released = pins_->AwaitReleased(absl::Now() + kPinGrace);
  }
  if (!released) {
    spdlog::warn("push at clock {}: gRPC still references gradient memory {} after the push "
                 "was written",
                 push_clock_, absl::FormatDuration(kPinGrace));
  }
  return first;
}

absl::Status GrpcParameterClient::AwaitAnswers(const Unanswered& push) {
  // Every stream's answer (or end), as a stream per push gave them: the other
  // servers' parts of a push that fails on one still land or fail on their own.
  absl::Status first;
  for (size_t i = 0; i < push_streams_.size(); ++i) {
    const std::string what = absl::StrCat("push at clock ", push.clock, " to server ",
                                          servers_[stripes_[i].server].address);
    absl::Status st;
    switch (push_streams_[i]->Await(push.answers[i], push.deadline)) {
      case internal::PushStreamCall::Outcome::kAnswered:
        break;
      case internal::PushStreamCall::Outcome::kEnded:
        st = FromGrpcStatus(push_streams_[i]->Close(), what);
        push_streams_[i].reset();
        if (st.ok()) {
          st = absl::UnavailableError(
              absl::StrCat(what, ": the stream ended before the push was answered"));
        }
        break;
      case internal::PushStreamCall::Outcome::kTimedOut:
        st = absl::DeadlineExceededError(
            absl::StrCat(what, ": no answer in ", absl::FormatDuration(options_.push_timeout)));
        break;
    }
    if (first.ok()) first = st;
  }
  // After a failure the servers' state of this push is unknown (some parts
  // may be open): fresh streams for the next one.
  if (!first.ok()) ClosePushStreams();
  return first;
}

absl::Status GrpcParameterClient::AwaitUnanswered() {
  if (!unanswered_.has_value()) return absl::OkStatus();
  const Unanswered push = *std::move(unanswered_);
  unanswered_.reset();
  return AwaitAnswers(push);
}

absl::Status GrpcParameterClient::AwaitPushes() { return AwaitUnanswered(); }

absl::Status GrpcParameterClient::DiscardOpenPush() {
  const absl::Status before = AwaitUnanswered();
  ClosePushStreams();
  return before;
}

void GrpcParameterClient::ClosePushStreams() {
  for (auto& stream : push_streams_) {
    if (stream != nullptr) stream->Close();
    stream.reset();
  }
  push_ends_.clear();  // what they hold may point into the caller's gradients
}

absl::Status GrpcParameterClient::Push(int64_t clock,
                                       absl::Span<const absl::Span<const float>> grads) {
  if (grads.size() != tensor_sizes_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("push of ", grads.size(), " tensors; the plan has ", tensor_sizes_.size()));
  }
  for (size_t t = 0; t < grads.size(); ++t) {
    if (grads[t].size() != tensor_sizes_[t]) {
      return absl::InvalidArgumentError(absl::StrCat("push of '", tensor_names_[t], "': ",
                                                     grads[t].size(), " values, expected ",
                                                     tensor_sizes_[t]));
    }
  }
  TESSERA_RETURN_IF_ERROR(BeginPush(clock));
  for (size_t t = 0; t < grads.size(); ++t) {
    TESSERA_RETURN_IF_ERROR(PushTensor(static_cast<int>(t), grads[t]));
  }
  return FinishPush();
}

std::vector<std::vector<GrpcParameterClient::Piece>> GrpcParameterClient::Stripes(
    const Server& server, size_t channels) {
  const uint64_t min_elements = kMinStripeBytes / sizeof(float);
  const uint64_t count = std::max<uint64_t>(
      1, std::min<uint64_t>(channels, server.elements / min_elements));
  // Stripe k ends at element ceil((k + 1) * elements / count) of the
  // server's pieces taken in order; a piece may be cut between stripes.
  std::vector<std::vector<Piece>> stripes(count);
  uint64_t start = 0;  // of the current piece, counted over all pieces
  size_t k = 0;
  for (const Piece& piece : server.pieces) {
    uint64_t begin = piece.begin;
    while (begin < piece.end) {
      const uint64_t stripe_end = ((k + 1) * server.elements + count - 1) / count;
      const uint64_t end = std::min(piece.end, piece.begin + (stripe_end - start));
      stripes[k].push_back(Piece{piece.tensor, begin, end});
      begin = end;
      if (start + (end - piece.begin) == stripe_end) ++k;
    }
    start += piece.end - piece.begin;
  }
  return stripes;
}

absl::Status GrpcParameterClient::StartPull(int64_t clock,
                                            absl::Span<const absl::Span<float>> params) {
  if (pull_open_) return absl::FailedPreconditionError("a pull is already outstanding");
  if (clock < 0) return absl::InvalidArgumentError(absl::StrCat("pull at clock ", clock));
  // The worker reads its own pushes: the one in flight lands first.
  TESSERA_RETURN_IF_ERROR(AwaitUnanswered());
  if (params.size() != tensor_sizes_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pull of ", params.size(), " tensors; the plan has ", tensor_sizes_.size()));
  }
  for (size_t t = 0; t < params.size(); ++t) {
    if (params[t].size() != tensor_sizes_[t]) {
      return absl::InvalidArgumentError(absl::StrCat("pull of '", tensor_names_[t], "' into ",
                                                     params[t].size(), " values, expected ",
                                                     tensor_sizes_[t]));
    }
  }
  pull_target_.index = &tensor_index_;
  pull_target_.params.assign(params.begin(), params.end());
  uint64_t pull_bytes = 0;
  for (const absl::Span<float>& p : params) pull_bytes += p.size() * sizeof(float);
  pull_target_.stream = pull_bytes >= options_.streamed_pull_bytes;
  pull_streams_.resize(stripes_.size());
  for (size_t i = 0; i < stripes_.size(); ++i) {
    const Stripe& stripe = stripes_[i];
    PullRequest request;
    request.set_job_id(job_id_);
    request.set_worker(rank_);
    request.set_clock(clock);
    request.set_wait_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(options_.pull_timeout)));
    for (const Piece& p : stripe.pieces) {
      TensorSlice* s = request.add_slices();
      s->set_tensor(tensor_names_[p.tensor]);
      s->set_begin(p.begin);
      s->set_end(p.end);
      const Compression codec = codecs_[p.tensor];
      const bool narrow = codec == COMPRESSION_FP16 || codec == COMPRESSION_BF16;
      request.add_encodings(narrow ? codec : COMPRESSION_NONE);
      pull_wire_bytes_ += (p.end - p.begin) * (narrow ? 2 : sizeof(float));
      pull_raw_bytes_ += (p.end - p.begin) * sizeof(float);
    }
    // A stream that ended between pulls (a server restarted) is replaced.
    if (pull_streams_[i] != nullptr && pull_streams_[i]->ended()) {
      pull_streams_[i]->Close();
      pull_streams_[i].reset();
    }
    if (pull_streams_[i] == nullptr) {
      pull_streams_[i] = std::make_unique<internal::PullStreamCall>(
          servers_[stripe.server].stubs[stripe.part].get());
    }
    pull_streams_[i]->Start(request, &pull_target_);
  }
  pull_open_ = true;
  return absl::OkStatus();
}

absl::Status GrpcParameterClient::FinishPull(int64_t* view_clock) {
  if (!pull_open_) return absl::FailedPreconditionError("FinishPull without StartPull");
  pull_open_ = false;
  // The server gives up waiting at pull_timeout and says why; this allows
  // for its answer to arrive.
  const absl::Time deadline = absl::Now() + options_.pull_timeout + kPullAnswerGrace;
  absl::Status first;
  int64_t view = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < pull_streams_.size() && first.ok(); ++i) {
    internal::PullStreamCall& stream = *pull_streams_[i];
    const std::string what = absl::StrCat("pull from server ", servers_[stripes_[i].server].address);
    switch (stream.Await(deadline)) {
      case internal::PullStreamCall::Outcome::kAnswered:
        if (stream.received() != stripes_[i].elements) {
          first = absl::DataLossError(absl::StrCat(what, ": got ", stream.received(),
                                                   " values, expected ", stripes_[i].elements));
        }
        view = std::min(view, stream.view_clock());
        pull_messages_ += stream.messages();
        break;
      case internal::PullStreamCall::Outcome::kEnded: {
        const absl::Status error = stream.error();
        const grpc::Status closed = stream.Close();
        pull_streams_[i].reset();
        if (!error.ok()) {
          first = absl::Status(error.code(), absl::StrCat(what, ": ", error.message()));
        } else if (!closed.ok()) {
          first = FromGrpcStatus(closed, what);
        } else {
          first = absl::UnavailableError(
              absl::StrCat(what, ": the stream ended before the pull was answered"));
        }
        break;
      }
      case internal::PullStreamCall::Outcome::kTimedOut:
        first = absl::DeadlineExceededError(absl::StrCat(
            what, ": no answer in ", absl::FormatDuration(options_.pull_timeout + kPullAnswerGrace)));
        break;
    }
  }
  // The other streams' pulls are still in flight (or unknown): they write
  // into the caller's buffers, so they are cancelled before returning, and
  // the next pull opens fresh streams.
  if (!first.ok()) ClosePullStreams();
  TESSERA_RETURN_IF_ERROR(first);
  if (view_clock != nullptr) *view_clock = servers_.empty() ? -1 : view;
  return absl::OkStatus();
}

void GrpcParameterClient::ClosePullStreams() {
  for (auto& stream : pull_streams_) {
    if (stream != nullptr) stream->Close();
    stream.reset();
  }
}

absl::Status GrpcParameterClient::Pull(int64_t clock, absl::Span<const absl::Span<float>> params,
                                       int64_t* view_clock) {
  TESSERA_RETURN_IF_ERROR(StartPull(clock, params));
  return FinishPull(view_clock);
}

ParameterClientFactory GrpcParameterClientFactory(const PsClientOptions& options) {
  return [options](const std::string& job_id, int rank,
                   const TensorPlan& plan) -> absl::StatusOr<std::unique_ptr<ParameterClient>> {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<GrpcParameterClient> client,
                             GrpcParameterClient::Create(job_id, rank, plan, options));
    return std::unique_ptr<ParameterClient>(std::move(client));
  };
}

}  // namespace tessera::worker
