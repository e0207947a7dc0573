// The PS client against real in-process parameter servers over loopback gRPC:
// plain, streamed, compressed and batched pushes, plain, 16-bit and batched
// pulls, what reaches the weights in each case, and the bytes and messages
// each puts on the wire; against a fake server for answers no real one sends.

#include "worker/rpc/ps_client.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/initializer.h"
#include "common/job_spec.h"
#include "common/range.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/rpc/parameter_server.h"

namespace tessera {
namespace {

using worker::GrpcParameterClient;

// Two tensors over two servers: "w" split between them (several chunks each),
// "b" small, on the second.
constexpr uint64_t kW = (kMaxChunkBytes / 4) * 3 + 123;
constexpr uint64_t kB = 10;

TensorSpec Tensor(const std::string& name, uint64_t size) {
  TensorSpec t;
  t.set_name(name);
  t.set_size(size);
  t.set_init(TensorSpec::NORMAL);
  t.set_scale(0.5f);
  return t;
}

TensorSlice Slice(const std::string& tensor, uint64_t begin, uint64_t end) {
  TensorSlice s;
  s.set_tensor(tensor);
  s.set_begin(begin);
  s.set_end(end);
  return s;
}

std::vector<float> Gradient(uint64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> g(n);
  for (float& v : g) v = dist(rng);
  return g;
}

class PsClientTest : public ::testing::Test {
 protected:
  static OptimizerSpec SgdAt1() {
    OptimizerSpec o;
    o.set_kind(OptimizerSpec::SGD);
    o.set_learning_rate(1.0f);
    return o;
  }

  // An ASYNC job, by default SGD at learning rate 1: each push subtracts
  // what the servers decoded, so the weights show exactly what arrived.
  void StartJob(const CompressionSpec& compression, const OptimizerSpec& optimizer = SgdAt1()) {
    const std::vector<std::vector<TensorSlice>> held = {
        {Slice("w", 0, kW / 2)}, {Slice("w", kW / 2, kW), Slice("b", 0, kB)}};
    StartPlan(compression, {Tensor("w", kW), Tensor("b", kB)}, held, optimizer);
  }

  // As StartJob, for `tensors`, server s holding held[s].
  void StartPlan(const CompressionSpec& compression, const std::vector<TensorSpec>& tensors,
                 const std::vector<std::vector<TensorSlice>>& held,
                 const OptimizerSpec& optimizer = SgdAt1()) {
    client_.reset();
    servers_.clear();
    JobSpec spec;
    spec.set_mode(ASYNC);
    spec.set_seed(5);
    *spec.mutable_optimizer() = optimizer;
    *spec.mutable_compression() = compression;
    ApplyJobDefaults(&spec);
    spec_ = spec;
    plan_ = TensorPlan();
    for (const TensorSpec& t : tensors) *plan_.add_tensors() = t;
    *plan_.mutable_compression() = spec.compression();
    *plan_.mutable_optimizer() = spec.optimizer();
    for (size_t s = 0; s < held.size(); ++s) {
      servers_.push_back(std::make_unique<server::ParameterServer>());
      ASSERT_TRUE(servers_.back()->Start("127.0.0.1", 0).ok());
      ServerSlices* ss = plan_.add_servers();
      ss->set_server_id(absl::StrCat("s", s));
      ss->set_address(absl::StrCat("127.0.0.1:", servers_.back()->port()));
      for (const TensorSlice& slice : held[s]) *ss->add_slices() = slice;
      ASSERT_TRUE(servers_.back()->store()->CreateJob("j", spec, tensors, held[s], {0}).ok());
    }
    // Pushes in flight whatever the plan's size (the tests' is 3 MiB), the
    // path with more to get wrong.
    worker::PsClientOptions options;
    options.overlapped_push_bytes = 0;
    auto client = GrpcParameterClient::Create("j", 0, plan_, options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::vector<float> Initial(int t) const {
    std::vector<float> v(plan_.tensors(t).size());
    InitializeSlice(plan_.tensors(t), 5, Range{0, v.size()}, absl::MakeSpan(v));
    return v;
  }

  // Pulls both tensors (fp32 unless the job's codec narrows pulls).
  std::vector<std::vector<float>> PullAll(int64_t clock) {
    std::vector<std::vector<float>> out = {std::vector<float>(kW, NAN),
                                           std::vector<float>(kB, NAN)};
    std::vector<absl::Span<float>> spans = {absl::MakeSpan(out[0]), absl::MakeSpan(out[1])};
    int64_t view = -5;
    absl::Status st = client_->Pull(clock, absl::MakeConstSpan(spans), &view);
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  // What the servers hold, read from the stores directly (always fp32).
  // What the servers hold, read from their stores once the client's push
  // in flight is answered.
  std::vector<float> Held(const std::string& tensor, uint64_t size) {
    EXPECT_TRUE(client_->AwaitPushes().ok());
    std::vector<float> out(size);
    for (const ServerSlices& ss : plan_.servers()) {
      for (const TensorSlice& slice : ss.slices()) {
        if (slice.tensor() != tensor) continue;
        const int s = std::stoi(ss.server_id().substr(1));
        std::vector<server::PulledSlice> got;
        EXPECT_TRUE(servers_[s]->store()->Pull("j", 0, 0, {slice}, absl::Now(), &got).ok());
        std::copy(got[0].values.begin(), got[0].values.end(), out.begin() + slice.begin());
      }
    }
    return out;
  }

  absl::Status Push(int64_t clock, const std::vector<float>& w, const std::vector<float>& b) {
    std::vector<absl::Span<const float>> grads = {w, b};
    return client_->Push(clock, absl::MakeConstSpan(grads));
  }
  // Push, then its answers: the push's own outcome (Push returns once it is
  // written out, and reports the push before it).
  absl::Status PushAnswered(int64_t clock, const std::vector<float>& w,
                            const std::vector<float>& b) {
    TESSERA_RETURN_IF_ERROR(Push(clock, w, b));
    return client_->AwaitPushes();
  }

  JobSpec spec_;
  TensorPlan plan_;
  std::vector<std::unique_ptr<server::ParameterServer>> servers_;
  std::unique_ptr<GrpcParameterClient> client_;
};

TEST_F(PsClientTest, PlainPushAndPullMoveExactValues) {
  StartJob(CompressionSpec());
  const std::vector<float> w0 = Initial(0), b0 = Initial(1);
  const std::vector<float> gw = Gradient(kW, 1), gb = Gradient(kB, 2);
  ASSERT_TRUE(Push(0, gw, gb).ok());
  const auto pulled = PullAll(1);
  for (uint64_t i = 0; i < kW; ++i) ASSERT_EQ(pulled[0][i], w0[i] - gw[i]) << i;
  for (uint64_t i = 0; i < kB; ++i) ASSERT_EQ(pulled[1][i], b0[i] - gb[i]) << i;
  const auto bytes = client_->transfer_bytes();
  EXPECT_EQ(bytes.push_wire, bytes.push_raw);
  EXPECT_EQ(bytes.push_raw, (kW + kB) * 4);
}

// Each server holds ~1.5 MiB: with 2 servers, 2 streams per operation keep
// one stripe per server, 4 make 2 each, and so on up to 6 (256 KiB each),
// cutting "w" anywhere and, on the second server, running from "w" into "b".
TEST_F(PsClientTest, StripedPushesAndPullsMoveExactValues) {
  StartJob(CompressionSpec());
  std::vector<float> w = Held("w", kW), b = Held("b", kB);
  int64_t clock = 0;
  for (int streams : {1, 2, 3, 4, 6, 10, 12, worker::kMaxStreams}) {
    worker::PsClientOptions options;
    options.streams = streams;
    auto client = GrpcParameterClient::Create("j", 0, plan_, options);
    ASSERT_TRUE(client.ok()) << client.status();
    const std::vector<float> gw = Gradient(kW, 7 + streams), gb = Gradient(kB, 8 + streams);
    std::vector<absl::Span<const float>> grads = {gw, gb};
    ASSERT_TRUE((*client)->Push(clock++, absl::MakeConstSpan(grads)).ok()) << streams;
    for (uint64_t i = 0; i < kW; ++i) w[i] -= gw[i];
    for (uint64_t i = 0; i < kB; ++i) b[i] -= gb[i];
    std::vector<float> pw(kW, NAN), pb(kB, NAN);
    std::vector<absl::Span<float>> spans = {absl::MakeSpan(pw), absl::MakeSpan(pb)};
    int64_t view = -5;
    ASSERT_TRUE((*client)->Pull(clock, absl::MakeConstSpan(spans), &view).ok()) << streams;
    EXPECT_EQ(view, clock - 1);
    ASSERT_EQ(pw, w) << streams << " streams";
    ASSERT_EQ(pb, b) << streams << " streams";
  }
  EXPECT_EQ(servers_[0]->store()->Stats("j")->pushes, 8u);
  for (int streams : {0, -1, worker::kMaxStreams + 1}) {
    worker::PsClientOptions options;
    options.streams = streams;
    auto client = GrpcParameterClient::Create("j", 0, plan_, options);
    EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << streams;
  }
}

// Pulls written with streaming stores (here every pull, over 1-6 stripes)
// land the same values, and the plain copy stays for pulls under the size.
TEST_F(PsClientTest, PullsWithStreamingStoresMoveExactValues) {
  StartJob(CompressionSpec());
  const std::vector<float> w = Held("w", kW), b = Held("b", kB);
  for (int streams : {1, 2, 3, 6}) {
    for (uint64_t from_bytes : {uint64_t{0}, (kW + kB) * sizeof(float) + 1}) {
      worker::PsClientOptions options;
      options.streams = streams;
      options.streamed_pull_bytes = from_bytes;
      auto client = GrpcParameterClient::Create("j", 0, plan_, options);
      ASSERT_TRUE(client.ok()) << client.status();
      // Misaligned by one float, with a guard either side.
      std::vector<float> pw(kW + 2, NAN), pb(kB + 2, NAN);
      std::vector<absl::Span<float>> spans = {absl::MakeSpan(pw).subspan(1, kW),
                                              absl::MakeSpan(pb).subspan(1, kB)};
      int64_t view = -5;
      ASSERT_TRUE((*client)->Pull(0, absl::MakeConstSpan(spans), &view).ok()) << streams;
      EXPECT_TRUE(std::isnan(pw.front()) && std::isnan(pw.back())) << streams;
      ASSERT_TRUE(std::equal(w.begin(), w.end(), pw.begin() + 1)) << streams << " " << from_bytes;
      ASSERT_TRUE(std::equal(b.begin(), b.end(), pb.begin() + 1)) << streams << " " << from_bytes;
    }
  }
}

TEST_F(PsClientTest, StreamedPushInAnyOrderAndAStartedPull) {
  StartJob(CompressionSpec());
  const std::vector<float> w0 = Initial(0);
  const std::vector<float> gw = Gradient(kW, 3), gb = Gradient(kB, 4);
  ASSERT_TRUE(client_->BeginPush(0).ok());
  ASSERT_TRUE(client_->PushTensor(1, gb).ok());  // last layer first, as backward does
  ASSERT_TRUE(client_->PushTensor(0, gw).ok());
  EXPECT_EQ(client_->PushTensor(0, gw).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(client_->FinishPush().ok());

  std::vector<float> w(kW), b(kB);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(w), absl::MakeSpan(b)};
  ASSERT_TRUE(client_->StartPull(1, absl::MakeConstSpan(spans)).ok());
  EXPECT_EQ(client_->StartPull(1, absl::MakeConstSpan(spans)).code(),
            absl::StatusCode::kFailedPrecondition);
  int64_t view = -5;
  ASSERT_TRUE(client_->FinishPull(&view).ok());
  EXPECT_EQ(view, 0);
  for (uint64_t i = 0; i < kW; i += 997) ASSERT_EQ(w[i], w0[i] - gw[i]) << i;
}

TEST_F(PsClientTest, AnIncompleteStreamedPushAppliesNothing) {
  StartJob(CompressionSpec());
  const std::vector<float> gw = Gradient(kW, 5);
  ASSERT_TRUE(client_->BeginPush(0).ok());
  ASSERT_TRUE(client_->PushTensor(0, gw).ok());
  // A server holding w and not b has all of its part now; had the client sent
  // that part's end before FinishPush, the server would apply it. Give such a
  // chunk time to land before FinishPush calls the push off.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(Held("w", kW), Initial(0));
  const absl::Status st = client_->FinishPush();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'b' was not pushed"), absl::string_view::npos) << st;
  EXPECT_EQ(Held("w", kW), Initial(0));
  // The client is usable afterwards.
  ASSERT_TRUE(Push(0, gw, Gradient(kB, 6)).ok());
}

// With several stripes, stripes after the first start their writes on the
// client's sender threads. Pushes abandoned mid-way (a new BeginPush closes
// their streams while a sender may still hold writes for them) apply
// nothing, and the pushes after them land exactly once.
TEST_F(PsClientTest, AbandonedStripedPushesApplyNothing) {
  StartJob(CompressionSpec());
  std::vector<float> w = Held("w", kW), b = Held("b", kB);
  worker::PsClientOptions options;
  options.streams = 6;  // 3 stripes per server: 5 sender threads
  auto client = GrpcParameterClient::Create("j", 0, plan_, options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<float> gw = Gradient(kW, 9), gb = Gradient(kB, 10);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE((*client)->BeginPush(0).ok());
    ASSERT_TRUE((*client)->PushTensor(0, gw).ok());  // "b" never comes
  }
  EXPECT_EQ(Held("w", kW), w);
  std::vector<absl::Span<const float>> grads = {gw, gb};
  for (int64_t clock = 0; clock < 3; ++clock) {
    ASSERT_TRUE((*client)->Push(clock, absl::MakeConstSpan(grads)).ok()) << clock;
    for (uint64_t i = 0; i < kW; ++i) w[i] -= gw[i];
    for (uint64_t i = 0; i < kB; ++i) b[i] -= gb[i];
  }
  ASSERT_TRUE((*client)->AwaitPushes().ok());
  EXPECT_EQ(Held("w", kW), w);
  EXPECT_EQ(Held("b", kB), b);
}

// FinishPush waits (up to seconds) for gRPC to let go of the gradient memory a
// float32 push sends from: a reference the client itself kept would stall
// every push that long.
TEST_F(PsClientTest, APushReturnsAsSoonAsTheServersHaveIt) {
  StartJob(CompressionSpec());
  const std::vector<float> gw = Gradient(kW, 7), gb = Gradient(kB, 8);
  const absl::Time start = absl::Now();
  for (int64_t clock = 0; clock < 5; ++clock) ASSERT_TRUE(Push(clock, gw, gb).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

// With pushes_in_flight 2 a push returns once it is written out and the one
// before it is answered: never more than one unanswered, each landing
// exactly once and in order, with one stripe per server or several (the
// server keeps a striped push open beside the next one, which names it).
// With 1, each push is answered before it returns.
TEST_F(PsClientTest, PushesInFlightLandExactlyOnceAndOneAtMostIsUnanswered) {
  StartJob(CompressionSpec());
  std::vector<float> w = Held("w", kW), b = Held("b", kB);
  uint64_t committed = 0;  // on server 0, which every push reaches
  int64_t clock = 0;
  for (int in_flight : {2, 1}) {
    for (int streams : {2, 6}) {
      worker::PsClientOptions options;
      options.streams = streams;
      options.pushes_in_flight = in_flight;
      options.overlapped_push_bytes = 0;
      auto client = GrpcParameterClient::Create("j", 0, plan_, options);
      ASSERT_TRUE(client.ok()) << client.status();
      // Made beforehand, so that the pushes go back to back.
      const std::vector<float> gw = Gradient(kW, 100 + clock), gb = Gradient(kB, 200 + clock);
      const std::vector<absl::Span<const float>> grads = {gw, gb};
      for (int k = 0; k < 20; ++k) {
        ASSERT_TRUE((*client)->Push(clock++, absl::MakeConstSpan(grads)).ok())
            << in_flight << " in flight, " << streams << " streams, push " << k;
        for (uint64_t i = 0; i < kW; ++i) w[i] -= gw[i];
        for (uint64_t i = 0; i < kB; ++i) b[i] -= gb[i];
        ++committed;
        const uint64_t answered = servers_[0]->store()->Stats("j")->pushes;
        ASSERT_GE(answered, committed - (in_flight - 1)) << in_flight << " " << streams;
      }
      ASSERT_TRUE((*client)->AwaitPushes().ok());
      EXPECT_EQ(servers_[0]->store()->Stats("j")->pushes, committed);
      EXPECT_EQ(Held("w", kW), w) << in_flight << " in flight, " << streams << " streams";
      EXPECT_EQ(Held("b", kB), b) << in_flight << " in flight, " << streams << " streams";
    }
  }
  for (int bad : {0, 3}) {
    worker::PsClientOptions options;
    options.pushes_in_flight = bad;
    EXPECT_EQ(GrpcParameterClient::Create("j", 0, plan_, options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// A push in flight that the server refuses is reported by the next call that
// waits for it, saying which push failed: the pull after it, when the push
// was written out before the refusal came; else the push itself, at once
// (a refused stream may keep gRPC holding the gradients until it is closed,
// which that report does).
TEST_F(PsClientTest, ARefusedPushInFlightFailsTheNextPull) {
  StartJob(CompressionSpec());
  const std::vector<float> gw = Gradient(kW, 21), gb = Gradient(kB, 22);
  ASSERT_TRUE(PushAnswered(0, gw, gb).ok());
  ASSERT_TRUE(servers_[1]->store()->DropJob("j").ok());
  const absl::Time t0 = absl::Now();
  absl::Status st = Push(1, gw, gb);  // written out; the answer comes later
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));  // not the 5 s wait for the gradients
  if (st.ok()) {
    std::vector<float> w(kW), b(kB);
    std::vector<absl::Span<float>> spans = {absl::MakeSpan(w), absl::MakeSpan(b)};
    st = client_->Pull(2, absl::MakeConstSpan(spans), nullptr);
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_NE(st.message().find("push at clock 1 to server " + plan_.servers(1).address()),
            absl::string_view::npos)
      << st;
  // Reported once: nothing is in flight any more.
  EXPECT_TRUE(client_->AwaitPushes().ok());
}

// Pushes share one long-lived stream per server; a push the server refuses
// ends it, and the next push opens a new one.
TEST_F(PsClientTest, APushAfterARefusedPushGoesThrough) {
  StartJob(CompressionSpec());
  const std::vector<float> w0 = Initial(0), b0 = Initial(1);
  const std::vector<float> gw = Gradient(kW, 11), gb = Gradient(kB, 12);
  ASSERT_TRUE(PushAnswered(0, gw, gb).ok());
  // The second server forgets the job: the push fails there, naming it.
  ASSERT_TRUE(servers_[1]->store()->DropJob("j").ok());
  const absl::Status refused = PushAnswered(1, gw, gb);
  EXPECT_EQ(refused.code(), absl::StatusCode::kNotFound) << refused;
  EXPECT_NE(refused.message().find(plan_.servers(1).address()), absl::string_view::npos)
      << refused;
  // The job is back (fresh weights there): the next pushes go through.
  ASSERT_TRUE(servers_[1]
                  ->store()
                  ->CreateJob("j", spec_, {plan_.tensors(0), plan_.tensors(1)},
                              {Slice("w", kW / 2, kW), Slice("b", 0, kB)}, {0})
                  .ok());
  for (int64_t clock = 2; clock < 4; ++clock) ASSERT_TRUE(Push(clock, gw, gb).ok()) << clock;
  const auto pulled = PullAll(4);
  // First server: the first push, the refused one (its part there applied,
  // ASYNC pushes are per server) and two more; second server: two.
  for (uint64_t i = 0; i < kW; i += 997) {
    const float want = i < kW / 2 ? w0[i] - gw[i] - gw[i] - gw[i] - gw[i]
                                  : w0[i] - gw[i] - gw[i];
    ASSERT_EQ(pulled[0][i], want) << i;
  }
  for (uint64_t i = 0; i < kB; ++i) ASSERT_EQ(pulled[1][i], b0[i] - gb[i] - gb[i]) << i;
}

// A worker's push and pull streams stay open between operations; a server
// that stops cancels them instead of waiting out its grace period, and the
// worker's next push or pull to it fails with a status that names it.
TEST_F(PsClientTest, AServerStopsPromptlyWithIdleStreamsOpen) {
  StartJob(CompressionSpec());
  ASSERT_TRUE(Push(0, Gradient(kW, 13), Gradient(kB, 14)).ok());
  PullAll(1);
  const absl::Time t0 = absl::Now();
  servers_[1]->Stop();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1)) << "the grace period is 2 s";
  const absl::Status st = PushAnswered(1, Gradient(kW, 15), Gradient(kB, 16));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(plan_.servers(1).address()), absl::string_view::npos) << st;
  std::vector<float> w(kW), b(kB);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(w), absl::MakeSpan(b)};
  const absl::Status pulled = client_->Pull(2, absl::MakeConstSpan(spans), nullptr);
  EXPECT_FALSE(pulled.ok());
  EXPECT_NE(pulled.message().find(plan_.servers(1).address()), absl::string_view::npos)
      << pulled;
}

// A pull the server refuses ends that server's pull stream with its status;
// the next pull opens fresh streams and reads every value again.
TEST_F(PsClientTest, APullAfterARefusedPullGoesThrough) {
  StartJob(CompressionSpec());
  const std::vector<float> w0 = Initial(0), b0 = Initial(1);
  const std::vector<float> gw = Gradient(kW, 17), gb = Gradient(kB, 18);
  ASSERT_TRUE(Push(0, gw, gb).ok());
  PullAll(1);
  ASSERT_TRUE(servers_[1]->store()->DropJob("j").ok());
  std::vector<float> w(kW, NAN), b(kB, NAN);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(w), absl::MakeSpan(b)};
  const absl::Status refused = client_->Pull(1, absl::MakeConstSpan(spans), nullptr);
  EXPECT_EQ(refused.code(), absl::StatusCode::kNotFound) << refused;
  EXPECT_NE(refused.message().find(plan_.servers(1).address()), absl::string_view::npos)
      << refused;
  ASSERT_TRUE(servers_[1]
                  ->store()
                  ->CreateJob("j", spec_, {plan_.tensors(0), plan_.tensors(1)},
                              {Slice("w", kW / 2, kW), Slice("b", 0, kB)}, {0})
                  .ok());
  for (int64_t clock = 1; clock < 4; ++clock) {
    const auto pulled = PullAll(clock);
    for (uint64_t i = 0; i < kW; i += 991) {
      // The first server kept the push; the second starts from fresh weights.
      ASSERT_EQ(pulled[0][i], i < kW / 2 ? w0[i] - gw[i] : w0[i]) << clock << " " << i;
    }
    for (uint64_t i = 0; i < kB; ++i) ASSERT_EQ(pulled[1][i], b0[i]) << clock << " " << i;
  }
}

// A pull that must wait longer than the client's pull_timeout ends with the
// server's DEADLINE_EXCEEDED, which names the workers it waited for.
TEST_F(PsClientTest, APullPastItsTimeoutSaysWhoIsBehind) {
  StartJob(CompressionSpec());
  // An SSP job with staleness 0 on both servers: clock 1 needs worker 0's push at clock 0.
  JobSpec spec = spec_;
  spec.set_mode(SSP);
  spec.set_staleness(0);
  const std::vector<std::vector<TensorSlice>> held = {
      {Slice("w", 0, kW / 2)}, {Slice("w", kW / 2, kW), Slice("b", 0, kB)}};
  for (int s = 0; s < 2; ++s) {
    ASSERT_TRUE(servers_[s]->store()->DropJob("j").ok());
    ASSERT_TRUE(servers_[s]
                    ->store()
                    ->CreateJob("j", spec, {plan_.tensors(0), plan_.tensors(1)}, held[s], {0})
                    .ok());
  }
  worker::PsClientOptions options;
  options.pull_timeout = absl::Milliseconds(300);
  auto client = GrpcParameterClient::Create("j", 0, plan_, options);
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<float> w(kW), b(kB);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(w), absl::MakeSpan(b)};
  const absl::Time t0 = absl::Now();
  const absl::Status st = (*client)->Pull(2, absl::MakeConstSpan(spans), nullptr);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("behind: 0 (at clock -1)"), absl::string_view::npos) << st;
  // The same client pulls once the push is in.
  const std::vector<float> gw = Gradient(kW, 19), gb = Gradient(kB, 20);
  const std::vector<absl::Span<const float>> grads = {gw, gb};
  ASSERT_TRUE((*client)->Push(0, absl::MakeConstSpan(grads)).ok());
  EXPECT_TRUE((*client)->Pull(1, absl::MakeConstSpan(spans), nullptr).ok());
}

TEST_F(PsClientTest, Fp16HalvesTheBytesBothWays) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_FP16);
  c.set_min_elements(100);  // "b" stays fp32
  StartJob(c);
  const std::vector<float> w0 = Initial(0), b0 = Initial(1);
  const std::vector<float> gw = Gradient(kW, 7), gb = Gradient(kB, 8);
  ASSERT_TRUE(Push(0, gw, gb).ok());
  const std::vector<float> held = Held("w", kW);
  for (uint64_t i = 0; i < kW; ++i) {
    ASSERT_NEAR(held[i], w0[i] - gw[i], 1e-3 * std::fabs(gw[i]) + 1e-6) << i;
  }
  EXPECT_EQ(Held("b", kB)[3], b0[3] - gb[3]);  // below min_elements: exact
  const auto pulled = PullAll(1);
  for (uint64_t i = 0; i < kW; ++i) {
    ASSERT_NEAR(pulled[0][i], held[i], 1e-3 * std::fabs(held[i]) + 1e-6) << i;
  }
  const auto bytes = client_->transfer_bytes();
  EXPECT_EQ(bytes.push_wire, kW * 2 + kB * 4);
  EXPECT_EQ(bytes.pull_wire, kW * 2 + kB * 4);
}

TEST_F(PsClientTest, TopKSendsOnePercentAndFeedsBackTheRest) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_TOPK);
  c.set_topk_ratio(0.01);
  StartJob(c);
  const std::vector<float> w0 = Initial(0);
  const std::vector<float> gw = Gradient(kW, 9), gb = Gradient(kB, 10);
  ASSERT_TRUE(Push(0, gw, gb).ok());
  std::vector<float> held = Held("w", kW);
  uint64_t changed = 0;
  for (uint64_t i = 0; i < kW; ++i) {
    if (held[i] != w0[i]) {
      ++changed;
      ASSERT_EQ(held[i], w0[i] - gw[i]);  // a kept element arrives exactly
    }
  }
  // 1% of each chunk (ceil), chunks of 256Ki elements split by server.
  EXPECT_GT(changed, kW / 100);
  EXPECT_LT(changed, kW / 100 + 10);
  const auto bytes = client_->transfer_bytes();
  EXPECT_LT(bytes.push_wire, bytes.push_raw / 40);  // 8 bytes per kept element of 4 x 100

  // Pushing zeros sends the largest leftovers: error feedback.
  const std::vector<float> zw(kW, 0.0f), zb(kB, 0.0f);
  for (int step = 1; step <= 30; ++step) ASSERT_TRUE(Push(step, zw, zb).ok());
  held = Held("w", kW);
  uint64_t arrived = 0;
  for (uint64_t i = 0; i < kW; ++i) arrived += held[i] == w0[i] - gw[i];
  EXPECT_GT(arrived, 30 * kW / 100) << "leftovers did not arrive";
}

TEST_F(PsClientTest, TopKWarmupSendsTheScheduledShareAtEachClock) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_TOPK);
  c.set_topk_ratio(0.01);
  c.set_topk_warmup_steps(2);
  c.set_topk_warmup_start_ratio(0.16);  // clock 0: 16%, clock 1: 4%, then 1%
  c.set_min_elements(100);              // "b" stays fp32
  StartJob(c);
  // Kept elements per chunk: ceil(ratio * n), 8 bytes each; "w" is split by
  // server into chunks of at most 256Ki elements.
  auto expected_bytes = [&](double ratio) {
    uint64_t bytes = kB * 4;
    for (const auto& [begin, end] : {std::pair<uint64_t, uint64_t>{0, kW / 2}, {kW / 2, kW}}) {
      for (uint64_t off = begin; off < end; off += kMaxChunkBytes / 4) {
        const uint64_t n = std::min<uint64_t>(kMaxChunkBytes / 4, end - off);
        bytes += 8 * static_cast<uint64_t>(std::ceil(ratio * static_cast<double>(n)));
      }
    }
    return bytes;
  };
  const double ratios[] = {0.16, 0.04, 0.01, 0.01};
  uint64_t before = 0;
  for (int clock = 0; clock < 4; ++clock) {
    ASSERT_TRUE(Push(clock, Gradient(kW, 20 + clock), Gradient(kB, 30 + clock)).ok());
    const uint64_t wire = client_->transfer_bytes().push_wire;
    EXPECT_EQ(wire - before, expected_bytes(ratios[clock])) << "clock " << clock;
    before = wire;
  }
}

// precondition_on_worker: the worker divides by sqrt(v^) + eps of its own
// Adam second moment; the server applies w -= lr * g to that tensor only.
TEST_F(PsClientTest, PreconditionOnWorkerPushesGradientOverAdamsSecondMoment) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_NONE);
  (*c.mutable_tensors())["b"] = COMPRESSION_TOPK;  // "w" stays fp32, under Adam
  c.set_topk_ratio(1.0);                            // all of "b" arrives
  c.set_precondition_on_worker(true);
  OptimizerSpec adam;
  adam.set_kind(OptimizerSpec::ADAM);
  adam.set_learning_rate(0.5f);
  adam.set_beta1(0.9f);
  adam.set_beta2(0.5f);
  adam.set_epsilon(1e-30f);
  StartJob(c, adam);
  const std::vector<float> w0 = Initial(0), b0 = Initial(1);
  // Element 0 of "b" by hand, b2 = 0.5:
  //   push 1, g = 2:  v = 0.5 * 4 = 2,            v^ = 2 / (1 - 0.5)    = 4, sends  2 / 2 = 1
  //   push 2, g = -1: v = 0.5 * 2 + 0.5 * 1 = 1.5, v^ = 1.5 / (1 - 0.25) = 2, sends -1 / sqrt(2)
  // and the server steps by lr = 0.5 each time, with no first moment.
  std::vector<float> gb1(kB, 3.0f), gb2(kB, 3.0f);
  gb1[0] = 2.0f;
  gb2[0] = -1.0f;
  const std::vector<float> gw = Gradient(kW, 40);
  std::vector<float> minus_gw(kW);
  for (uint64_t i = 0; i < kW; ++i) minus_gw[i] = -gw[i];
  ASSERT_TRUE(Push(0, gw, gb1).ok());
  EXPECT_FLOAT_EQ(Held("b", kB)[0], b0[0] - 0.5f * 1.0f);
  ASSERT_TRUE(Push(1, minus_gw, gb2).ok());
  const std::vector<float> held_b = Held("b", kB);
  EXPECT_FLOAT_EQ(held_b[0], b0[0] - 0.5f * (1.0f - 1.0f / std::sqrt(2.0f)));
  // A constant gradient is sent as 1 each push: v^ = g^2 exactly.
  EXPECT_FLOAT_EQ(held_b[1], b0[1] - 0.5f * 2.0f);
  // "w" (fp32) keeps the server's Adam, first moment included: g then -g
  // steps by lr * sign(g) (m^ = g, v^ = g^2), then by lr * sign(g) * -0.01 /
  // 0.19 (m = 0.09 g - 0.1 g, bias 1 - 0.81; v^ = g^2 again). Without the
  // first moment the two steps would cancel.
  const std::vector<float> held_w = Held("w", kW);
  for (uint64_t i = 0; i < kW; i += 997) {
    const float sign = gw[i] > 0 ? 1.0f : -1.0f;
    ASSERT_NEAR(held_w[i], w0[i] - 0.5f * sign * (18.0f / 19.0f), 1e-5f) << i;
  }
}

TEST_F(PsClientTest, PreconditionOnWorkerFeedsBackThePreconditionedRemainder) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_NONE);
  (*c.mutable_tensors())["b"] = COMPRESSION_TOPK;
  c.set_topk_ratio(0.1);  // one of the 10 elements per push
  c.set_precondition_on_worker(true);
  OptimizerSpec adam;
  adam.set_kind(OptimizerSpec::ADAM);
  adam.set_learning_rate(1.0f);
  adam.set_beta2(0.5f);
  adam.set_epsilon(1e-30f);
  StartJob(c, adam);
  const std::vector<float> b0 = Initial(1);
  // Push 1: g = [4, -3, 1, 0...]; v^ = g^2, so each non-zero element becomes
  // its sign. Ties go to the lowest index: element 0 is sent (1), elements
  // 1 and 2 keep -1 and 1 as residuals. Pushes 2 and 3, g = 0, add nothing
  // (0 / sqrt(v^)) and send the residuals, largest (then lowest) first.
  std::vector<float> g(kB, 0.0f);
  g[0] = 4.0f;
  g[1] = -3.0f;
  g[2] = 1.0f;
  const std::vector<float> zw(kW, 0.0f), zb(kB, 0.0f);
  ASSERT_TRUE(Push(0, zw, g).ok());
  std::vector<float> held = Held("b", kB);
  EXPECT_FLOAT_EQ(held[0], b0[0] - 1.0f);
  EXPECT_FLOAT_EQ(held[1], b0[1]);
  ASSERT_TRUE(Push(1, zw, zb).ok());
  held = Held("b", kB);
  EXPECT_FLOAT_EQ(held[1], b0[1] + 1.0f);
  EXPECT_FLOAT_EQ(held[2], b0[2]);
  ASSERT_TRUE(Push(2, zw, zb).ok());
  EXPECT_FLOAT_EQ(Held("b", kB)[2], b0[2] - 1.0f);
}

TEST_F(PsClientTest, PreconditionOnWorkerNeedsAdamInThePlan) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_TOPK);
  StartJob(c);
  TensorPlan plan = plan_;
  plan.mutable_compression()->set_precondition_on_worker(true);  // with SGD
  auto client = GrpcParameterClient::Create("j", 0, plan);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(client.status().message().find("precondition_on_worker"), absl::string_view::npos)
      << client.status();
}

// A model of many small tensors, each whole on one of two servers (as the
// scheduler's planner places tensors under 64 KiB): with every codec, the
// small pieces travel batched, a handful of messages per push and pull
// instead of one per tensor, and each lands what its codec sends.
TEST_F(PsClientTest, ManySmallTensorsTravelBatched) {
  constexpr int kTensors = 40;
  std::vector<TensorSpec> tensors;
  std::vector<std::vector<TensorSlice>> held(2);
  for (int t = 0; t < kTensors; ++t) {
    // 100..18195 elements; the last four are over kBatchedPieceBytes and go
    // on their own, after the batch before them.
    const uint64_t size =
        t < kTensors - 4 ? 100 + 517 * static_cast<uint64_t>(t) : kBatchedPieceBytes / 4 + 3000;
    tensors.push_back(Tensor(absl::StrCat("t", t), size));
    held[t % 2].push_back(Slice(tensors.back().name(), 0, size));
  }
  for (Compression codec : {COMPRESSION_NONE, COMPRESSION_FP16, COMPRESSION_BF16,
                            COMPRESSION_TOPK, COMPRESSION_ONEBIT}) {
    SCOPED_TRACE(CompressionName(codec));
    CompressionSpec c;
    c.set_codec(codec);
    c.set_topk_ratio(0.05);
    StartPlan(c, tensors, held);
    std::vector<std::vector<float>> before, grads;
    std::vector<absl::Span<const float>> spans;
    for (int t = 0; t < kTensors; ++t) {
      before.push_back(Initial(t));
      grads.push_back(Gradient(tensors[t].size(), 100 + t));
    }
    for (const auto& g : grads) spans.push_back(g);
    ASSERT_TRUE(client_->Push(0, absl::MakeConstSpan(spans)).ok());
    std::vector<std::vector<float>> after;
    for (int t = 0; t < kTensors; ++t) {
      after.push_back(Held(tensors[t].name(), tensors[t].size()));
      const std::vector<float>& w0 = before[t];
      const std::vector<float>& g = grads[t];
      const std::vector<float>& w = after[t];
      uint64_t changed = 0;
      float magnitude = -1;
      for (size_t i = 0; i < g.size(); ++i) {
        const float sent = w0[i] - w[i];  // SGD at rate 1
        switch (codec) {
          case COMPRESSION_NONE:
            ASSERT_EQ(w[i], w0[i] - g[i]) << t << " " << i;
            break;
          case COMPRESSION_FP16:
            ASSERT_NEAR(sent, g[i], 1e-3 * std::fabs(g[i]) + 1e-6) << t << " " << i;
            break;
          case COMPRESSION_BF16:
            ASSERT_NEAR(sent, g[i], 1e-2 * std::fabs(g[i]) + 1e-6) << t << " " << i;
            break;
          case COMPRESSION_TOPK:
            if (w[i] != w0[i]) {
              ++changed;
              ASSERT_EQ(w[i], w0[i] - g[i]) << t << " " << i;  // a kept element, exactly
            }
            break;
          default:  // ONEBIT: the sign, times one magnitude per chunk
            ASSERT_EQ(sent > 0, g[i] > 0) << t << " " << i;
            if (magnitude < 0) magnitude = std::fabs(sent);
            ASSERT_NEAR(std::fabs(sent), magnitude, 1e-5f * magnitude) << t << " " << i;
            break;
        }
      }
      if (codec == COMPRESSION_TOPK) {
        EXPECT_EQ(changed, (g.size() * 5 + 99) / 100) << t;  // 5% of the chunk, ceil
      }
    }
    // Pulled as held (fp32), or within 16-bit rounding of it.
    std::vector<std::vector<float>> pulled;
    std::vector<absl::Span<float>> into;
    for (int t = 0; t < kTensors; ++t) pulled.emplace_back(tensors[t].size(), NAN);
    for (auto& p : pulled) into.push_back(absl::MakeSpan(p));
    int64_t view = -5;
    ASSERT_TRUE(client_->Pull(1, absl::MakeConstSpan(into), &view).ok());
    EXPECT_EQ(view, 0);
    const double tolerance =
        codec == COMPRESSION_FP16 ? 1e-3 : codec == COMPRESSION_BF16 ? 1e-2 : 0;
    for (int t = 0; t < kTensors; ++t) {
      for (size_t i = 0; i < pulled[t].size(); ++i) {
        ASSERT_NEAR(pulled[t][i], after[t][i], tolerance * std::fabs(after[t][i]) + 1e-6)
            << t << " " << i;
      }
    }
    // Each server's 18 small tensors (about 640 KB of float32) go in one or
    // two batched messages, its 2 large ones in one each; a message per
    // tensor would be 40.
    const auto messages = client_->messages();
    EXPECT_LE(messages.push, 2 * (2 + 2));
    EXPECT_LE(messages.pull, 2 * (2 + 2));
    EXPECT_GE(messages.pull, 2 * (1 + 2));
  }
}

// Plans that do not hold every element of every tensor exactly once are
// refused before anything is sent, saying what is wrong.
TEST(PsClientPlanTest, InconsistentPlansAreRefused) {
  auto plan = [](const std::vector<TensorSpec>& tensors,
                 const std::vector<TensorSlice>& slices, const std::string& address) {
    TensorPlan p;
    for (const TensorSpec& t : tensors) *p.add_tensors() = t;
    ServerSlices* ss = p.add_servers();
    ss->set_server_id("s0");
    ss->set_address(address);
    for (const TensorSlice& s : slices) *ss->add_slices() = s;
    return p;
  };
  const std::string at = "127.0.0.1:1";
  const struct {
    std::string name;
    TensorPlan plan;
    std::string text;
  } cases[] = {
      {"a tensor twice", plan({Tensor("a", 4), Tensor("a", 4)}, {Slice("a", 0, 4)}, at),
       "tensor 'a' is listed twice"},
      {"an unknown tensor", plan({Tensor("a", 4)}, {Slice("a", 0, 4), Slice("z", 0, 1)}, at),
       "unknown tensor 'z'"},
      {"a gap", plan({Tensor("a", 4)}, {Slice("a", 0, 2), Slice("a", 3, 4)}, at),
       "do not cover it exactly once"},
      {"an overlap", plan({Tensor("a", 4)}, {Slice("a", 0, 3), Slice("a", 2, 4)}, at),
       "do not cover it exactly once"},
      {"past the end", plan({Tensor("a", 4)}, {Slice("a", 0, 5)}, at), "bad slice [0, 5)"},
      {"no address", plan({Tensor("a", 4)}, {Slice("a", 0, 4)}, ""), "has no address"},
  };
  for (const auto& c : cases) {
    auto client = GrpcParameterClient::Create("j", 0, c.plan);
    EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(client.status().message().find(c.text), absl::string_view::npos)
        << c.name << ": " << client.status();
  }
}

// A parameter server that answers every pull with `answer`: what the client
// makes of batches no real server sends.
class FakePullService final : public ParameterService::Service {
 public:
  explicit FakePullService(std::vector<PullChunk> answer) : answer_(std::move(answer)) {}
  grpc::Status PullStream(grpc::ServerContext*,
                          grpc::ServerReaderWriter<PullChunk, PullRequest>* stream) override {
    PullRequest request;
    while (stream->Read(&request)) {
      for (const PullChunk& chunk : answer_) {
        if (!stream->Write(chunk)) return grpc::Status::OK;
      }
    }
    return grpc::Status::OK;
  }

 private:
  const std::vector<PullChunk> answer_;
};

// Pulls tensors "a" (4 floats) and "b" (3) from a server answering `chunk`.
absl::Status PullFromFake(const PullChunk& chunk, std::vector<float>* a, std::vector<float>* b) {
  FakePullService service({chunk});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  ConfigureServerBuilder(&builder);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return absl::UnavailableError("no fake server");
  TensorPlan plan;
  *plan.add_tensors() = Tensor("a", 4);
  *plan.add_tensors() = Tensor("b", 3);
  ServerSlices* ss = plan.add_servers();
  ss->set_server_id("fake");
  ss->set_address(absl::StrCat("127.0.0.1:", port));
  *ss->add_slices() = Slice("a", 0, 4);
  *ss->add_slices() = Slice("b", 0, 3);
  worker::PsClientOptions options;
  options.pull_timeout = absl::Seconds(10);
  TESSERA_ASSIGN_OR_RETURN(auto client, GrpcParameterClient::Create("j", 0, plan, options));
  a->assign(4, NAN);
  b->assign(3, NAN);
  std::vector<absl::Span<float>> spans = {absl::MakeSpan(*a), absl::MakeSpan(*b)};
  int64_t view = -5;
  absl::Status st = client->Pull(0, absl::MakeConstSpan(spans), &view);
  client.reset();
  server->Shutdown();
  return st;
}

// A batched answer lands entry by entry; entries that set the pull's fields,
// name a tensor not pulled, or run past it are refused as DATA_LOSS, saying
// which.
TEST(PsClientBatchTest, PulledBatchEntriesLandOrAreRefused) {
  const std::vector<float> va = {1, 2, 3, 4}, vb = {5, 6, 7};
  auto entry = [](PullChunk* batch, const std::string& tensor, uint64_t offset,
                  const std::vector<float>& v) {
    PullChunk* e = batch->add_batch();
    e->set_tensor(tensor);
    e->set_offset(offset);
    e->set_values(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    return e;
  };
  PullChunk good;
  good.set_end_of_pull(true);
  entry(&good, "a", 0, va);
  entry(&good, "b", 0, vb);
  std::vector<float> a, b;
  ASSERT_TRUE(PullFromFake(good, &a, &b).ok());
  EXPECT_EQ(a, va);
  EXPECT_EQ(b, vb);

  struct Case {
    std::string name;
    PullChunk chunk;
    std::string text;
  };
  std::vector<Case> cases;
  for (int k = 0; k < 5; ++k) {
    PullChunk bad;
    bad.set_end_of_pull(true);
    entry(&bad, "a", 0, va);
    PullChunk* e = entry(&bad, "b", 0, vb);
    switch (k) {
      case 0:
        e->set_view_clock(3);
        cases.push_back({"an entry's view clock", bad, "malformed batch entry 1 for tensor 'b'"});
        break;
      case 1:
        e->set_end_of_pull(true);
        cases.push_back({"an entry's end_of_pull", bad, "sets fields of the pull"});
        break;
      case 2:
        e->add_batch()->set_tensor("a");
        cases.push_back({"a batch in an entry", bad, "sets fields of the pull"});
        break;
      case 3:
        e->set_tensor("zz");
        cases.push_back({"an unknown tensor", bad, "tensor 'zz'"});
        break;
      default:
        e->set_offset(1);
        cases.push_back({"past the tensor", bad, "tensor 'b' at offset 1"});
        break;
    }
  }
  for (const Case& c : cases) {
    const absl::Status st = PullFromFake(c.chunk, &a, &b);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << c.name << ": " << st;
    EXPECT_NE(st.message().find(c.text), absl::string_view::npos) << c.name << ": " << st;
  }
}

TEST_F(PsClientTest, OneBitSendsSignsScaledByTheMeanMagnitude) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_ONEBIT);
  StartJob(c);
  const std::vector<float> b0 = Initial(1);
  std::vector<float> gb = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10};
  ASSERT_TRUE(Push(0, Gradient(kW, 11), gb).ok());
  const std::vector<float> held = Held("b", kB);
  for (uint64_t i = 0; i < kB; ++i) {
    ASSERT_FLOAT_EQ(held[i], b0[i] - (gb[i] > 0 ? 5.5f : -5.5f)) << i;  // mean |g| = 5.5
  }
  const auto bytes = client_->transfer_bytes();
  EXPECT_LT(bytes.push_wire, bytes.push_raw / 30);
}

}  // namespace
}  // namespace tessera
