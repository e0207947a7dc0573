#include "worker/rpc/ps_client.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/range.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"

namespace tessera::worker {
namespace {

constexpr uint64_t kFloatsPerChunk = kMaxChunkBytes / sizeof(float);

// Runs fn(i) for every i in [0, n) concurrently and returns the first error.
template <typename Fn>
absl::Status ForEachParallel(size_t n, Fn fn) {
  if (n == 1) return fn(0);
  std::vector<std::future<absl::Status>> futures;
  futures.reserve(n);
  for (size_t i = 0; i < n; ++i) futures.push_back(std::async(std::launch::async, fn, i));
  absl::Status first;
  for (auto& f : futures) {
    absl::Status st = f.get();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcParameterClient>> GrpcParameterClient::Create(
    const std::string& job_id, int rank, const TensorPlan& plan, const PsClientOptions& options) {
  // Validate: every element of every tensor is held by exactly one server.
  std::vector<std::vector<Range>> covered(plan.tensors_size());
  std::vector<std::string> names;
  for (const TensorSpec& t : plan.tensors()) names.push_back(t.name());
  for (const ServerSlices& s : plan.servers()) {
    if (s.address().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("plan: server ", s.server_id(), " has no address"));
    }
    for (const TensorSlice& slice : s.slices()) {
      auto it = std::find(names.begin(), names.end(), slice.tensor());
      if (it == names.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("plan: server ", s.address(), " holds unknown tensor '", slice.tensor(), "'"));
      }
      const size_t t = it - names.begin();
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
  return std::unique_ptr<GrpcParameterClient>(
      new GrpcParameterClient(job_id, rank, plan, options));
}

GrpcParameterClient::GrpcParameterClient(std::string job_id, int rank, const TensorPlan& plan,
                                         const PsClientOptions& options)
    : job_id_(std::move(job_id)), rank_(rank), options_(options) {
  for (const TensorSpec& t : plan.tensors()) {
    tensor_names_.push_back(t.name());
    tensor_sizes_.push_back(t.size());
  }
  for (const ServerSlices& s : plan.servers()) {
    if (s.slices_size() == 0) continue;
    Server server;
    server.address = s.address();
    server.stub = ParameterService::NewStub(MakeChannel(s.address()));
    for (const TensorSlice& slice : s.slices()) {
      const int t = static_cast<int>(
          std::find(tensor_names_.begin(), tensor_names_.end(), slice.tensor()) -
          tensor_names_.begin());
      server.pieces.push_back(Piece{t, slice.begin(), slice.end()});
    }
    servers_.push_back(std::move(server));
  }
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
  return ForEachParallel(servers_.size(),
                         [&](size_t i) { return PushTo(servers_[i], clock, grads); });
}

absl::Status GrpcParameterClient::PushTo(Server& server, int64_t clock,
                                         absl::Span<const absl::Span<const float>> grads) {
  grpc::ClientContext ctx;
  SetTimeout(&ctx, options_.push_timeout);
  PushResponse response;
  std::unique_ptr<grpc::ClientWriter<PushChunk>> writer = server.stub->Push(&ctx, &response);
  PushChunk chunk;
  chunk.set_job_id(job_id_);
  chunk.set_worker(rank_);
  chunk.set_clock(clock);
  bool broken = false;
  for (const Piece& p : server.pieces) {
    chunk.set_tensor(tensor_names_[p.tensor]);
    for (uint64_t off = p.begin; off < p.end && !broken; off += kFloatsPerChunk) {
      const uint64_t n = std::min<uint64_t>(kFloatsPerChunk, p.end - off);
      chunk.set_offset(off);
      chunk.set_values(reinterpret_cast<const char*>(grads[p.tensor].data() + off),
                       n * sizeof(float));
      broken = !writer->Write(chunk);
    }
    if (broken) break;
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  return FromGrpcStatus(st, absl::StrCat("push to server ", server.address));
}

absl::Status GrpcParameterClient::Pull(int64_t clock, absl::Span<const absl::Span<float>> params,
                                       int64_t* view_clock) {
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
  std::vector<int64_t> views(servers_.size(), -1);
  TESSERA_RETURN_IF_ERROR(ForEachParallel(
      servers_.size(), [&](size_t i) { return PullFrom(servers_[i], clock, params, &views[i]); }));
  if (view_clock != nullptr) {
    *view_clock = views.empty() ? -1 : *std::min_element(views.begin(), views.end());
  }
  return absl::OkStatus();
}

absl::Status GrpcParameterClient::PullFrom(Server& server, int64_t clock,
                                           absl::Span<const absl::Span<float>> params,
                                           int64_t* view_clock) {
  PullRequest request;
  request.set_job_id(job_id_);
  request.set_worker(rank_);
  request.set_clock(clock);
  uint64_t expected = 0;
  for (const Piece& p : server.pieces) {
    TensorSlice* s = request.add_slices();
    s->set_tensor(tensor_names_[p.tensor]);
    s->set_begin(p.begin);
    s->set_end(p.end);
    expected += p.end - p.begin;
  }
  grpc::ClientContext ctx;
  SetTimeout(&ctx, options_.pull_timeout);
  std::unique_ptr<grpc::ClientReader<PullChunk>> reader = server.stub->Pull(&ctx, request);
  PullChunk chunk;
  uint64_t received = 0;
  absl::Status bad;
  *view_clock = std::numeric_limits<int64_t>::max();
  while (reader->Read(&chunk)) {
    if (!bad.ok()) continue;  // drain so Finish() returns
    *view_clock = std::min(*view_clock, chunk.view_clock());
    auto it = std::find(tensor_names_.begin(), tensor_names_.end(), chunk.tensor());
    const size_t n = chunk.values().size() / sizeof(float);
    if (it == tensor_names_.end() || chunk.values().size() % sizeof(float) != 0 ||
        chunk.offset() + n > tensor_sizes_[it - tensor_names_.begin()]) {
      bad = absl::DataLossError(absl::StrCat("pull from server ", server.address,
                                             ": malformed chunk for tensor '", chunk.tensor(),
                                             "' at offset ", chunk.offset()));
      ctx.TryCancel();
      continue;
    }
    std::memcpy(params[it - tensor_names_.begin()].data() + chunk.offset(), chunk.values().data(),
                chunk.values().size());
    received += n;
  }
  grpc::Status st = reader->Finish();
  if (!bad.ok()) return bad;
  TESSERA_RETURN_IF_ERROR(FromGrpcStatus(st, absl::StrCat("pull from server ", server.address)));
  if (received != expected) {
    return absl::DataLossError(absl::StrCat("pull from server ", server.address, ": got ",
                                            received, " values, expected ", expected));
  }
  return absl::OkStatus();
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
