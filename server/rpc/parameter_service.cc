#include "server/rpc/parameter_service.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kernels/compress.h"
#include "common/job_spec.h"
#include "common/rpc/chunk_codec.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace tessera::server {
namespace {

// A waiting pull wakes this often to notice a client that went away; the
// synchronous API has no cancellation callback.
constexpr absl::Duration kCancelPollInterval = absl::Seconds(1);

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

absl::Time ContextDeadline(const grpc::ServerContextBase& ctx) {
  const auto deadline = ctx.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace

ParameterServiceImpl::ParameterServiceImpl(ShardStore* store, Options options)
    : store_(store), options_(options) {}

grpc::Status ParameterServiceImpl::CreateJob(grpc::ServerContext*, const CreateJobRequest* req,
                                             CreateJobResponse*) {
  const std::vector<TensorSpec> tensors(req->tensors().begin(), req->tensors().end());
  const std::vector<TensorSlice> slices(req->slices().begin(), req->slices().end());
  const std::vector<int> live(req->live_workers().begin(), req->live_workers().end());
  absl::Status s = store_->CreateJob(req->job_id(), req->spec(), tensors, slices, live);
  if (s.ok()) {
    spdlog::info("job '{}': holding {} slice(s), live workers {}", req->job_id(), slices.size(),
                 live.size());
  }
  return ToGrpcStatus(s);
}

grpc::Status ParameterServiceImpl::DropJob(grpc::ServerContext*, const DropJobRequest* req,
                                           DropJobResponse*) {
  absl::Status s = store_->DropJob(req->job_id());
  if (s.ok()) spdlog::info("job '{}': dropped", req->job_id());
  return ToGrpcStatus(s);
}

grpc::Status ParameterServiceImpl::SetLiveWorkers(grpc::ServerContext*,
                                                  const SetLiveWorkersRequest* req,
                                                  SetLiveWorkersResponse*) {
  const std::vector<int> live(req->live_workers().begin(), req->live_workers().end());
  absl::Status s = store_->SetLiveWorkers(req->job_id(), live);
  if (s.ok()) spdlog::info("job '{}': {} live worker(s)", req->job_id(), live.size());
  return ToGrpcStatus(s);
}

namespace {

// The chunks of one push on one stream (its part of the push): decodes each
// chunk, holds or copies it into the staging buffer of its slice, and ends or
// fails the part. The first chunk opens the session (or joins it, for a push
// in several parts); later ones must match it. Used by one reaction at a time.
class PushIntake {
 public:
  explicit PushIntake(ShardStore* store) : store_(store) {}
  // A push that was neither ended nor failed is discarded.
  ~PushIntake() { Fail(absl::CancelledError("push stream ended early; nothing applied")); }

  // Stages `chunk`; *end says whether it ends the push (end_of_push, on a
  // PushStream): its batch entries as they come, then its own tensor; a bare
  // marker carries nothing. An error fails the push.
  absl::Status Add(grpc::ByteBuffer* chunk, bool* end) {
    *end = false;
    PushChunk header;
    int entries = 0;
    absl::Status s = DecodeBatchedChunk(
        chunk, &header, PushChunk::kValuesFieldNumber, &entry_, PushChunk::kBatchFieldNumber,
        [&](ChunkPayload& payload) { return StageEntry(header, entries++, payload); },
        [&](ChunkPayload& payload) -> absl::Status {
          *end = header.end_of_push();
          // An end marker, or a batch, need not carry a piece of its own.
          if (header.tensor().empty() && (*end || entries > 0)) {
            return payload.size() == 0
                       ? absl::OkStatus()
                       : absl::InvalidArgumentError("push: a chunk with values but no tensor");
          }
          return Stage(header, header, payload);
        });
    if (!s.ok()) Fail(s);
    return s;
  }

  // This part ended cleanly: the last part commits (see PushSession::EndPart;
  // the caller runs `deferred` once it has answered). Then the intake takes
  // the next push. INVALID_ARGUMENT without chunks.
  absl::Status End(PushResponse* response, DeferredStep* deferred) {
    if (session_ == nullptr) return absl::InvalidArgumentError("push carried no chunks");
    ended_ = true;
    absl::Status s = session_->EndPart(deferred);
    response->set_elements(session_->elements());
    spdlog::trace("push job '{}' worker {} clock {} (part of {}): {} elements", job_id_, worker_,
                  clock_, parts_, response->elements());
    Reset();
    return s;
  }

  // This part failed (once; no-op without an open push): the push is discarded.
  void Fail(const absl::Status& why) {
    if (session_ == nullptr || ended_) return;
    ended_ = true;
    session_->FailPart(why);
  }

  // Whether a push is open on this stream (chunks came, no end yet).
  bool open() const { return session_ != nullptr && !ended_; }

 private:
  void Reset() {
    session_.reset();
    ended_ = false;
  }

  // Batch entry `i` (in entry_) of the message whose fields so far are in
  // `outer`: staged as a chunk of its own under the outer chunk's push fields.
  absl::Status StageEntry(const PushChunk& outer, int i, ChunkPayload& payload) {
    const PushChunk& entry = entry_;
    if (!entry.job_id().empty() || entry.worker() != 0 || entry.clock() != 0 ||
        entry.parts() != 0 || entry.push_id() != 0 || entry.prior_push_id() != 0 ||
        entry.end_of_push() || entry.batch_size() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("push: batch entry ", i, " (tensor '", entry.tensor(),
                       "') sets fields of the push; an entry carries only tensor, offset, "
                       "values, encoding, elements and scale"));
    }
    if (entry.tensor().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("push: batch entry ", i, " names no tensor"));
    }
    return Stage(outer, entry, payload);
  }

  // Stages `header`'s piece (tensor, offset, encoding, elements, scale) of
  // the push that `push`'s fields name: the same chunk, or a batch's message
  // and one of its entries.
  absl::Status Stage(const PushChunk& push, const PushChunk& header, ChunkPayload& payload) {
    TESSERA_RETURN_IF_ERROR(CheckHeader(push));
    if (payload.size() > kMaxChunkBytes) {
      return absl::InvalidArgumentError(absl::StrCat("push to '", header.tensor(),
                                                     "': a chunk of ", payload.size(),
                                                     " bytes exceeds the ", kMaxChunkBytes,
                                                     "-byte chunk limit"));
    }
    if (header.encoding() != COMPRESSION_NONE) return AddCompressed(header, payload);
    if (payload.size() >= kMinHeldChunkBytes) {
      // Left in gRPC's receive buffers until the optimizer step reads it.
      TESSERA_ASSIGN_OR_RETURN(auto bytes, payload.Hold());
      return session_->AddChunkHeld(header.tensor(), header.offset(), std::move(bytes));
    }
    return session_->AddChunkWith(header.tensor(), header.offset(), payload.size(),
                                  [&](char* dst) { return payload.ReadTo(dst); });
  }

  // A compressed chunk: the payload is read whole, then decoded into the
  // staging buffer as float32.
  absl::Status AddCompressed(const PushChunk& header, ChunkPayload& payload) {
    const std::string what = absl::StrCat("push to '", header.tensor(), "' at offset ",
                                          header.offset(), ", ",
                                          CompressionName(header.encoding()));
    uint64_t n = 0;
    switch (header.encoding()) {
      case COMPRESSION_FP16:
      case COMPRESSION_BF16:
        n = payload.size() / 2;
        break;
      case COMPRESSION_TOPK:
      case COMPRESSION_ONEBIT:
        n = header.elements();
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(what, ": unknown encoding"));
    }
    if (n == 0 || n > kMaxChunkBytes / sizeof(float)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", n, " elements; want 1..",
                                                     kMaxChunkBytes / sizeof(float)));
    }
    payload_.resize(payload.size());
    TESSERA_RETURN_IF_ERROR(payload.ReadTo(payload_.data()));
    const auto codec = static_cast<kernels::Codec>(header.encoding());
    return session_->AddChunkWith(
        header.tensor(), header.offset(), n * sizeof(float), [&](char* dst) -> absl::Status {
          if (!kernels::DecodePayload(codec, payload_.data(), payload_.size(), n, header.scale(),
                                      reinterpret_cast<float*>(dst))) {
            return absl::InvalidArgumentError(absl::StrCat(
                what, ": ", payload_.size(), " bytes are not a valid payload of ", n,
                " elements"));
          }
          return absl::OkStatus();
        });
  }

  absl::Status CheckHeader(const PushChunk& c) {
    if (session_ == nullptr) {
      if (c.job_id().empty()) {
        return absl::InvalidArgumentError("push: the first chunk has no job_id");
      }
      if (c.parts() > static_cast<uint32_t>(kMaxPushParts)) {
        return absl::InvalidArgumentError(absl::StrCat("push in ", c.parts(), " parts; want 1..",
                                                       kMaxPushParts));
      }
      job_id_ = c.job_id();
      worker_ = c.worker();
      clock_ = c.clock();
      parts_ = std::max<uint32_t>(c.parts(), 1);
      push_id_ = c.push_id();
      TESSERA_ASSIGN_OR_RETURN(session_,
                               store_->JoinPush(job_id_, worker_, clock_, push_id_, parts_,
                                                c.prior_push_id()));
      return absl::OkStatus();
    }
    if (c.job_id() != job_id_ || c.worker() != worker_ || c.clock() != clock_ ||
        std::max<uint32_t>(c.parts(), 1) != parts_ || (parts_ > 1 && c.push_id() != push_id_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "push: a chunk for job '", c.job_id(), "' worker ", c.worker(), " clock ", c.clock(),
          " (push ", c.push_id(), " in ", c.parts(), " parts) inside a push opened for job '",
          job_id_, "' worker ", worker_, " clock ", clock_, " (push ", push_id_, " in ", parts_,
          " parts)"));
    }
    return absl::OkStatus();
  }

  ShardStore* const store_;
  std::string payload_;  // a compressed chunk's payload, reused
  PushChunk entry_;      // the batch entry being staged, reused
  std::shared_ptr<PushSession> session_;
  bool ended_ = false;  // EndPart or FailPart was called for session_
  std::string job_id_;
  int worker_ = -1;
  int64_t clock_ = -1;
  uint32_t parts_ = 1;
  uint64_t push_id_ = 0;
};

// Push: one push (or one part of it) per stream; the client's half-close
// ends it. Reactions run on gRPC's callback threads, one at a time.
class PushReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PushReactor(ShardStore* store, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response)
      : ctx_(ctx), response_(response), intake_(store) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      DeferredStep step;
      Finish(ToGrpcStatus(End(&step)));
      step.Run();  // once answered; `this` may be gone, `step` is ours
      return;
    }
    bool end = false;
    absl::Status st = intake_.Add(&chunk_, &end);
    chunk_.Clear();
    if (st.ok() && end) {
      st = absl::InvalidArgumentError("push: end_of_push belongs on a PushStream");
      intake_.Fail(st);
    }
    if (!st.ok()) {
      Finish(ToGrpcStatus(st));  // stop reading; nothing of the push is applied
      return;
    }
    StartRead(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  // The stream ended: the part is done, unless the client went away.
  absl::Status End(DeferredStep* deferred) {
    if (ctx_->IsCancelled()) {
      const absl::Status broken = absl::CancelledError("push stream broken; nothing applied");
      intake_.Fail(broken);
      return broken;
    }
    PushResponse resp;
    TESSERA_RETURN_IF_ERROR(intake_.End(&resp, deferred));
    *response_ = MessageBuffer(resp);
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const response_;
  grpc::ByteBuffer chunk_;
  PushIntake intake_;
};

// PushStream: a worker's pushes to this server one after another on one
// stream, each ended by an end_of_push chunk and answered by a PushResponse.
// A push that fails ends the stream with its status (the client opens a new
// one); a stream that breaks or half-closes mid-push discards that push.
class PushStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  PushStreamReactor(ParameterServiceImpl* service, ShardStore* store,
                    grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx), intake_(store) {
    service_->AddStream(ctx_);
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-closed or broken
      intake_.Fail(absl::CancelledError("push stream ended mid-push; nothing applied"));
      Finish(grpc::Status::OK);
      return;
    }
    bool end = false;
    absl::Status st = intake_.Add(&chunk_, &end);
    chunk_.Clear();
    if (st.ok() && end) {
      PushResponse resp;
      DeferredStep step;
      st = intake_.End(&resp, &step);
      if (st.ok()) {
        response_ = MessageBuffer(resp);
        StartWrite(&response_);  // the next read starts once it is out
        // The step once the answer is on its way. Reactions may now run on
        // other threads (and end the call): nothing of `this` from here.
        step.Run();
        return;
      }
    }
    if (!st.ok()) {
      Finish(ToGrpcStatus(st));
      return;
    }
    StartRead(&chunk_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "push stream: the client went away"));
      return;
    }
    StartRead(&chunk_);
  }

  void OnDone() override {
    service_->RemoveStream(ctx_);
    delete this;
  }

 private:
  ParameterServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer chunk_;
  grpc::ByteBuffer response_;
  PushIntake intake_;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* ParameterServiceImpl::Push(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) {
  return new PushReactor(store_, ctx, response);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ParameterServiceImpl::PushStream(
    grpc::CallbackServerContext* ctx) {
  return new PushStreamReactor(this, store_, ctx);
}

void ParameterServiceImpl::AddStream(grpc::CallbackServerContext* ctx) {
  absl::MutexLock lock(&streams_mu_);
  streams_.insert(ctx);
  if (streams_cancelled_) ctx->TryCancel();
}

void ParameterServiceImpl::RemoveStream(grpc::CallbackServerContext* ctx) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(ctx);
}

void ParameterServiceImpl::CancelStreams() {
  // Under the lock: a stream's context lives until RemoveStream.
  absl::MutexLock lock(&streams_mu_);
  streams_cancelled_ = true;
  for (grpc::CallbackServerContext* ctx : streams_) ctx->TryCancel();
}

namespace {

// One pull: parses and checks the request, opens the store's cursor (waiting
// as the job's mode says), then encodes one chunk at a time, each piece
// copied from the slice straight into the gRPC buffer that goes out
// (EncodeChunkHeaderLast). Used by one reaction at a time.
class PullWriter {
 public:
  explicit PullWriter(ShardStore* store) : store_(store) {}

  // Parses `request` and sets the deadline of the wait: `deadline`, capped
  // by the request's wait_ms (when set) and by now + max_wait.
  grpc::Status Parse(const grpc::ByteBuffer& request, absl::Time deadline,
                     absl::Duration max_wait) {
    cursor_.reset();
    grpc::ByteBuffer copy(request);  // shares the slices; Deserialize consumes it
    if (!grpc::SerializationTraits<PullRequest>::Deserialize(&copy, &req_).ok()) {
      return Invalid("pull: the request is not a PullRequest");
    }
    if (req_.job_id().empty()) return Invalid("pull: job_id is empty");
    if (req_.slices().empty()) {
      return Invalid(absl::StrCat("pull from job '", req_.job_id(), "': no slices asked for"));
    }
    if (req_.encodings_size() > req_.slices_size()) {
      return Invalid(absl::StrCat("pull from job '", req_.job_id(), "': ",
                                  req_.encodings_size(), " encodings for ", req_.slices_size(),
                                  " slices"));
    }
    slices_.assign(req_.slices().begin(), req_.slices().end());
    encodings_.assign(slices_.size(), COMPRESSION_NONE);
    size_t longest_name = 0;
    for (int i = 0; i < req_.slices_size(); ++i) {
      longest_name = std::max(longest_name, req_.slices(i).tensor().size());
      if (i >= req_.encodings_size()) continue;
      const Compression e = req_.encodings(i);
      if (e != COMPRESSION_NONE && e != COMPRESSION_FP16 && e != COMPRESSION_BF16) {
        return Invalid(absl::StrCat("pull from job '", req_.job_id(), "': slice ", i,
                                    " asks for encoding ", CompressionName(e),
                                    "; pulls take none, fp16 or bf16"));
      }
      encodings_[i] = e;
    }
    // The longest header a chunk of this pull can have: every field set, the
    // integers at their widest.
    PullChunk widest;
    widest.set_tensor(std::string(longest_name, 'x'));
    widest.set_offset(std::numeric_limits<uint64_t>::max());
    widest.set_version(-1);
    widest.set_view_clock(-1);
    widest.set_encoding(COMPRESSION_ONEBIT);
    widest.set_scale(1.0f);
    widest.set_end_of_pull(true);
    max_header_ = widest.ByteSizeLong();
    const absl::Time now = absl::Now();
    deadline_ = std::min(deadline, now + max_wait);
    if (req_.wait_ms() > 0) {
      // Past max_wait it no longer matters; the cap keeps the sum finite.
      const uint64_t cap = static_cast<uint64_t>(absl::ToInt64Milliseconds(max_wait));
      deadline_ = std::min(deadline_,
                           now + absl::Milliseconds(std::min(req_.wait_ms(), cap)));
    }
    return grpc::Status::OK;
  }

  // Opens the cursor if the data is fresh enough now. DEADLINE_EXCEEDED
  // with waits() true: the pull must wait (on a thread that may block, with
  // Wait). Other errors end the pull.
  absl::Status TryOpen() {
    waits_ = false;
    absl::StatusOr<std::unique_ptr<PullCursor>> cursor = Open(absl::InfinitePast());
    if (cursor.status().code() == absl::StatusCode::kDeadlineExceeded &&
        absl::Now() < deadline_) {
      waits_ = true;
      return cursor.status();
    }
    return Take(std::move(cursor));
  }
  bool waits() const { return waits_; }

  // On a thread that may block: waits as the job's mode says, until the
  // deadline, waking every kCancelPollInterval to notice a client that went
  // away.
  absl::Status Wait(grpc::CallbackServerContext* ctx) {
    while (true) {
      const absl::Time step = std::min(deadline_, absl::Now() + kCancelPollInterval);
      absl::StatusOr<std::unique_ptr<PullCursor>> cursor = Open(step);
      if (cursor.status().code() != absl::StatusCode::kDeadlineExceeded || step >= deadline_) {
        return Take(std::move(cursor));
      }
      if (ctx->IsCancelled()) return absl::CancelledError("pull cancelled");
    }
  }

  // Encodes the next piece, or the next run of small ones, into *chunk;
  // *last says whether it was the last one (it then carries end_of_pull when
  // `mark_end`). Once the cursor is open.
  absl::Status EncodeNext(grpc::ByteBuffer* chunk, bool mark_end, bool* last) {
    const size_t n = cursor_->NextSize(kMaxElements);
    // Small pieces go batched; a lone one (the tail of a large piece, a
    // pull of one small tensor) as a plain chunk.
    const size_t after = cursor_->SizeAfterNext(kMaxElements);
    if (n < kBatchedElements && after > 0 && after < kBatchedElements) {
      return EncodeBatch(chunk, mark_end, last);
    }
    const Compression encoding = encodings_[cursor_->next_range()];
    const auto codec = static_cast<kernels::Codec>(encoding);
    const size_t bytes =
        encoding == COMPRESSION_NONE ? n * sizeof(float) : kernels::PayloadBytes(codec, n, 0);
    absl::Status status;
    PullCursor::Piece piece;
    *chunk = EncodeChunkHeaderLast(
        PullChunk::kValuesFieldNumber, max_header_, bytes,
        [&](char* dst) -> const google::protobuf::MessageLite& {
          absl::StatusOr<bool> more = cursor_->Next(
              kMaxElements,
              [&](size_t) {
                if (encoding == COMPRESSION_NONE) return reinterpret_cast<float*>(dst);
                wide_.resize(n);
                return wide_.data();
              },
              &piece);
          header_.Clear();
          if (!more.ok()) {
            status = more.status();
            return header_;
          }
          if (encoding != COMPRESSION_NONE) {
            const float scale = kernels::PayloadScale(codec, wide_.data(), n);
            header_.set_scale(scale);
            kernels::EncodePayload(codec, wide_.data(), n, 0, scale, dst, nullptr);
          }
          header_.set_encoding(encoding);
          header_.set_tensor(*piece.tensor);
          header_.set_offset(piece.offset);
          header_.set_version(piece.version);
          header_.set_view_clock(cursor_->view_clock());
          *last = cursor_->NextSize(kMaxElements) == 0;
          if (*last && mark_end) header_.set_end_of_pull(true);
          return header_;
        });
    return status;
  }

 private:
  static constexpr size_t kMaxElements = kPullPieceBytes / sizeof(float);
  static constexpr size_t kBatchedElements = kBatchedPieceBytes / sizeof(float);

  // Consecutive small pieces as the entries of one PullChunk (its batch), up
  // to about kMaxBatchBytes in all: each piece is copied from its slice into
  // scratch (its version is read under the same lock), then written into
  // its entry in the outgoing buffer, a second copy, of a few cached
  // kilobytes, that is nothing beside the message it saves.
  absl::Status EncodeBatch(grpc::ByteBuffer* chunk, bool mark_end, bool* last) {
    PullChunk header;
    header.set_view_clock(cursor_->view_clock());
    for (size_t n = cursor_->NextSize(kMaxElements); n > 0 && n < kBatchedElements;
         n = cursor_->NextSize(kMaxElements)) {
      const Compression encoding = encodings_[cursor_->next_range()];
      const auto codec = static_cast<kernels::Codec>(encoding);
      const size_t bytes =
          encoding == COMPRESSION_NONE ? n * sizeof(float) : kernels::PayloadBytes(codec, n, 0);
      // max_header_ bounds the entry's fields; a few bytes more its framing.
      if (batch_.entries() > 0 && batch_.size() + max_header_ + 16 + bytes > kMaxBatchBytes) {
        break;
      }
      PullCursor::Piece piece;
      TESSERA_RETURN_IF_ERROR(cursor_->Next(
                                  kMaxElements,
                                  [this](size_t k) {
                                    wide_.resize(k);
                                    return wide_.data();
                                  },
                                  &piece)
                                  .status());
      PullChunk entry;
      entry.set_tensor(*piece.tensor);
      entry.set_offset(piece.offset);
      entry.set_version(piece.version);
      entry.set_encoding(encoding);
      float scale = 0.0f;
      if (encoding != COMPRESSION_NONE) {
        scale = kernels::PayloadScale(codec, wide_.data(), n);
        entry.set_scale(scale);
      }
      batch_.Add(header, entry, bytes, [&](char* dst) {
        if (encoding == COMPRESSION_NONE) {
          std::memcpy(dst, wide_.data(), bytes);
        } else {
          kernels::EncodePayload(codec, wide_.data(), n, 0, scale, dst, nullptr);
        }
      });
    }
    PullChunk trailer;
    *last = cursor_->NextSize(kMaxElements) == 0;
    if (*last && mark_end) trailer.set_end_of_pull(true);
    *chunk = batch_.Finish(trailer);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<PullCursor>> Open(absl::Time deadline) {
    return store_->OpenPull(req_.job_id(), req_.worker(), req_.clock(), slices_, deadline);
  }
  absl::Status Take(absl::StatusOr<std::unique_ptr<PullCursor>> cursor) {
    if (!cursor.ok()) return cursor.status();
    cursor_ = *std::move(cursor);
    return absl::OkStatus();
  }

  ShardStore* const store_;
  PullRequest req_;
  std::vector<TensorSlice> slices_;
  std::vector<Compression> encodings_;
  size_t max_header_ = 0;
  absl::Time deadline_;
  bool waits_ = false;
  std::unique_ptr<PullCursor> cursor_;
  PullChunk header_;
  std::vector<float> wide_;  // a 16-bit or a batched piece, before encoding
  BatchEncoder batch_{PullChunk::kBatchFieldNumber, PullChunk::kValuesFieldNumber,
                      kMaxBatchBytes + 1024};
};

// Pull: one pull per call, bounded by the call's deadline. The callback
// threads must not block, so a pull that has to wait for other workers waits
// on a thread of its own (ParameterServiceImpl::RunWaiter) and writes from
// there; reactions then run one at a time.
class PullReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  PullReactor(ParameterServiceImpl* service, ShardStore* store, absl::Duration max_wait,
              grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request)
      : ctx_(ctx), pull_(store) {
    grpc::Status st = pull_.Parse(*request, ContextDeadline(*ctx), max_wait);
    if (!st.ok()) {
      Finish(st);
      return;
    }
    absl::Status opened = pull_.TryOpen();
    if (pull_.waits()) {
      service->RunWaiter([this] { Start(pull_.Wait(ctx_)); });
      return;
    }
    Start(opened);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "pull: the client went away"));
      return;
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void Start(const absl::Status& opened) {
    if (!opened.ok()) {
      Finish(ToGrpcStatus(opened));
      return;
    }
    WriteNext();
  }

  // Writes the next piece; the last one with the status.
  void WriteNext() {
    bool last = false;
    absl::Status st = pull_.EncodeNext(&chunk_, /*mark_end=*/false, &last);
    if (!st.ok()) {
      Finish(ToGrpcStatus(st));
    } else if (last) {
      StartWriteAndFinish(&chunk_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&chunk_);
    }
  }

  grpc::CallbackServerContext* const ctx_;
  PullWriter pull_;
  grpc::ByteBuffer chunk_;  // the write in flight
};

// PullStream: a worker's pulls to this server one after another on one
// stream. Each PullRequest is answered by its chunks, the last marked
// end_of_pull; then the next request is read. A failed pull ends the stream
// with its status (the client opens a new one). A pull that must wait does
// so on a thread of its own, as for Pull; no read or write is in flight
// meanwhile, so reactions run one at a time.
class PullStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  PullStreamReactor(ParameterServiceImpl* service, ShardStore* store, absl::Duration max_wait,
                    grpc::CallbackServerContext* ctx)
      : service_(service), max_wait_(max_wait), ctx_(ctx), pull_(store) {
    service_->AddStream(ctx_);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-closed or broken, between pulls
      Finish(grpc::Status::OK);
      return;
    }
    grpc::Status st = pull_.Parse(request_, absl::InfiniteFuture(), max_wait_);
    request_.Clear();
    if (!st.ok()) {
      Finish(st);
      return;
    }
    absl::Status opened = pull_.TryOpen();
    if (pull_.waits()) {
      service_->RunWaiter([this] { Start(pull_.Wait(ctx_)); });
      return;
    }
    Start(opened);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "pull stream: the client went away"));
      return;
    }
    if (last_) {
      StartRead(&request_);
      return;
    }
    WriteNext();
  }

  void OnDone() override {
    service_->RemoveStream(ctx_);
    delete this;
  }

 private:
  void Start(const absl::Status& opened) {
    if (!opened.ok()) {
      Finish(ToGrpcStatus(opened));
      return;
    }
    WriteNext();
  }

  void WriteNext() {
    absl::Status st = pull_.EncodeNext(&chunk_, /*mark_end=*/true, &last_);
    if (!st.ok()) {
      Finish(ToGrpcStatus(st));
      return;
    }
    StartWrite(&chunk_);
  }

  ParameterServiceImpl* const service_;
  const absl::Duration max_wait_;
  grpc::CallbackServerContext* const ctx_;
  PullWriter pull_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer chunk_;  // the write in flight
  bool last_ = false;       // chunk_ is the last of its pull
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* ParameterServiceImpl::Pull(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return new PullReactor(this, store_, options_.max_pull_wait, ctx, request);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ParameterServiceImpl::PullStream(
    grpc::CallbackServerContext* ctx) {
  return new PullStreamReactor(this, store_, options_.max_pull_wait, ctx);
}

ParameterServiceImpl::~ParameterServiceImpl() = default;

void ParameterServiceImpl::RunWaiter(absl::AnyInvocable<void() &&> wait) {
  waiters_.Run(std::move(wait));
}

grpc::Status ParameterServiceImpl::Stats(grpc::ServerContext*, const ServerStatsRequest* req,
                                         ServerStatsResponse* resp) {
  auto stats = store_->Stats(req->job_id());
  if (!stats.ok()) return ToGrpcStatus(stats.status());
  resp->set_pushes(stats->pushes);
  resp->set_pulls(stats->pulls);
  resp->set_push_bytes(stats->push_bytes);
  resp->set_pull_bytes(stats->pull_bytes);
  resp->set_min_version(stats->min_version);
  for (uint64_t n : stats->staleness_histogram) resp->add_staleness_histogram(n);
  resp->set_waiting_pulls(stats->waiting_pulls);
  return grpc::Status::OK;
}

}  // namespace tessera::server
