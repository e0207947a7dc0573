#include "server/rpc/parameter_service.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

absl::Time ContextDeadline(const grpc::ServerContext& ctx) {
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

// One push stream: chunks are decoded one at a time, each straight into the
// staging buffer of its slice; the client's half-close commits the push.
// Reactions run on gRPC's callback threads, one at a time for a stream.
class PushReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PushReactor(ShardStore* store, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response)
      : store_(store), ctx_(ctx), response_(response) {
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(End());
      return;
    }
    grpc::Status st = AddChunk();
    chunk_.Clear();
    if (!st.ok()) {
      // Stop reading; the session (if any) is discarded, nothing applied.
      Finish(st);
      return;
    }
    StartRead(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  grpc::Status AddChunk() {
    PushChunk header;
    absl::Status s = DecodeChunk(&chunk_, &header, PushChunk::kValuesFieldNumber,
                                 [&](ChunkPayload& payload) -> absl::Status {
                                   TESSERA_RETURN_IF_ERROR(CheckHeader(header));
                                   if (payload.size() > kMaxChunkBytes) {
                                     return absl::InvalidArgumentError(absl::StrCat(
                                         "push to '", header.tensor(), "': a chunk of ",
                                         payload.size(), " bytes exceeds the ", kMaxChunkBytes,
                                         "-byte chunk limit"));
                                   }
                                   return session_->AddChunkWith(
                                       header.tensor(), header.offset(), payload.size(),
                                       [&](char* dst) { return payload.ReadTo(dst); });
                                 });
    return ToGrpcStatus(s);
  }

  // The first chunk opens the session; later ones must match it.
  absl::Status CheckHeader(const PushChunk& c) {
    if (session_ == nullptr) {
      if (c.job_id().empty()) {
        return absl::InvalidArgumentError("push: the first chunk has no job_id");
      }
      job_id_ = c.job_id();
      worker_ = c.worker();
      clock_ = c.clock();
      TESSERA_ASSIGN_OR_RETURN(session_, store_->BeginPush(job_id_, worker_, clock_));
      return absl::OkStatus();
    }
    if (c.job_id() != job_id_ || c.worker() != worker_ || c.clock() != clock_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "push: a chunk for job '", c.job_id(), "' worker ", c.worker(), " clock ", c.clock(),
          " inside a stream opened for job '", job_id_, "' worker ", worker_, " clock ", clock_));
    }
    return absl::OkStatus();
  }

  // The stream ended: commit, unless it ended because the client went away.
  grpc::Status End() {
    if (ctx_->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "push stream broken; nothing applied");
    }
    if (session_ == nullptr) return Invalid("push stream carried no chunks");
    absl::Status s = session_->Commit();
    if (!s.ok()) return ToGrpcStatus(s);
    PushResponse resp;
    resp.set_elements(session_->elements());
    const std::string bytes = resp.SerializeAsString();
    grpc::Slice slice(bytes);
    *response_ = grpc::ByteBuffer(&slice, 1);
    spdlog::trace("push job '{}' worker {} clock {}: {} elements", job_id_, worker_, clock_,
                  session_->elements());
    return grpc::Status::OK;
  }

  ShardStore* const store_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const response_;
  grpc::ByteBuffer chunk_;
  std::unique_ptr<PushSession> session_;
  std::string job_id_;
  int worker_ = -1;
  int64_t clock_ = -1;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* ParameterServiceImpl::Push(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) {
  return new PushReactor(store_, ctx, response);
}

grpc::Status ParameterServiceImpl::Pull(grpc::ServerContext* ctx, const PullRequest* req,
                                        grpc::ServerWriter<PullChunk>* writer) {
  if (req->job_id().empty()) return Invalid("pull: job_id is empty");
  if (req->slices().empty()) {
    return Invalid(absl::StrCat("pull from job '", req->job_id(), "': no slices asked for"));
  }
  const std::vector<TensorSlice> slices(req->slices().begin(), req->slices().end());
  const absl::Time deadline =
      std::min(ContextDeadline(*ctx), absl::Now() + options_.max_pull_wait);
  absl::StatusOr<std::unique_ptr<PullCursor>> cursor;
  while (true) {
    const absl::Time step = std::min(deadline, absl::Now() + kCancelPollInterval);
    cursor = store_->OpenPull(req->job_id(), req->worker(), req->clock(), slices, step);
    if (cursor.status().code() != absl::StatusCode::kDeadlineExceeded || step >= deadline) break;
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "pull cancelled");
  }
  if (!cursor.ok()) return ToGrpcStatus(cursor.status());

  // Each piece is copied from the slice straight into the chunk's bytes, whose
  // capacity the next piece reuses.
  constexpr size_t kMaxElements = kMaxChunkBytes / sizeof(float);
  PullChunk chunk;
  chunk.set_view_clock((*cursor)->view_clock());
  std::string* bytes = chunk.mutable_values();
  PullCursor::Piece piece;
  while (true) {
    absl::StatusOr<bool> more = (*cursor)->Next(
        kMaxElements,
        [&](size_t n) {
          bytes->resize(n * sizeof(float));
          return reinterpret_cast<float*>(bytes->data());
        },
        &piece);
    if (!more.ok()) return ToGrpcStatus(more.status());
    if (!*more) break;
    chunk.set_tensor(*piece.tensor);
    chunk.set_offset(piece.offset);
    chunk.set_version(piece.version);
    if (!writer->Write(chunk)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "pull: the client went away");
    }
  }
  return grpc::Status::OK;
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
