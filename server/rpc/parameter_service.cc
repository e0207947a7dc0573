#include "server/rpc/parameter_service.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/grpc_status.h"
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

grpc::Status ParameterServiceImpl::Push(grpc::ServerContext* ctx,
                                        grpc::ServerReader<PushChunk>* reader,
                                        PushResponse* resp) {
  PushChunk chunk;
  if (!reader->Read(&chunk)) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "push cancelled");
    return Invalid("push stream carried no chunks");
  }
  const std::string job_id = chunk.job_id();
  const int worker = chunk.worker();
  const int64_t clock = chunk.clock();
  if (job_id.empty()) return Invalid("push: the first chunk has no job_id");
  auto session = store_->BeginPush(job_id, worker, clock);
  if (!session.ok()) return ToGrpcStatus(session.status());
  do {
    if (chunk.job_id() != job_id || chunk.worker() != worker || chunk.clock() != clock) {
      return Invalid(absl::StrCat("push: a chunk for job '", chunk.job_id(), "' worker ",
                                  chunk.worker(), " clock ", chunk.clock(),
                                  " inside a stream opened for job '", job_id, "' worker ",
                                  worker, " clock ", clock));
    }
    if (chunk.values().size() > kMaxChunkBytes) {
      return Invalid(absl::StrCat("push to '", chunk.tensor(), "': a chunk of ",
                                  chunk.values().size(), " bytes exceeds the ", kMaxChunkBytes,
                                  "-byte chunk limit"));
    }
    absl::Status s = (*session)->AddChunk(chunk.tensor(), chunk.offset(), chunk.values().data(),
                                          chunk.values().size());
    if (!s.ok()) return ToGrpcStatus(s);
  } while (reader->Read(&chunk));
  // Read() also ends when the client goes away: never commit a broken stream.
  if (ctx->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "push stream broken; nothing applied");
  }
  absl::Status s = (*session)->Commit();
  if (!s.ok()) return ToGrpcStatus(s);
  resp->set_elements((*session)->elements());
  spdlog::trace("push job '{}' worker {} clock {}: {} elements", job_id, worker, clock,
                (*session)->elements());
  return grpc::Status::OK;
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
