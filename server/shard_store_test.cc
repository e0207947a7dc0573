#include "server/shard_store.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/held_bytes.h"
#include "common/initializer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/optimizer.h"

namespace tessera::server {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSize = 8;

TensorSpec Tensor(const std::string& name, uint64_t size) {
  TensorSpec t;
  t.set_name(name);
  t.set_size(size);
  t.set_init(TensorSpec::UNIFORM);
  t.set_scale(0.5f);
  return t;
}

TensorSlice SliceOf(const std::string& tensor, uint64_t begin, uint64_t end) {
  TensorSlice s;
  s.set_tensor(tensor);
  s.set_begin(begin);
  s.set_end(end);
  return s;
}

JobSpec Spec(ConsistencyMode mode, int staleness = 0) {
  JobSpec spec;
  spec.set_mode(mode);
  spec.set_staleness(staleness);
  spec.set_seed(7);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
  spec.mutable_optimizer()->set_learning_rate(0.5f);
  return spec;
}

// Initial values of elements [begin, end) of tensor "w" (size kSize).
std::vector<float> Initial(uint64_t begin, uint64_t end) {
  std::vector<float> v(end - begin);
  InitializeSlice(Tensor("w", kSize), 7, Range{begin, end}, absl::MakeSpan(v));
  return v;
}

std::vector<float> Grad(float base) {
  std::vector<float> g(kSize);
  for (uint64_t i = 0; i < kSize; ++i) g[i] = base + 0.25f * static_cast<float>(i);
  return g;
}

class ShardStoreTest : public ::testing::Test {
 protected:
  // Job "j" with tensor "w" [0, 8) held whole, and tensor "b" [0, 4) of which
  // this server holds [2, 4).
  void Create(ConsistencyMode mode, std::vector<int> live, int staleness = 0) {
    ASSERT_TRUE(store_
                    .CreateJob("j", Spec(mode, staleness), {Tensor("w", kSize), Tensor("b", 4)},
                               {SliceOf("w", 0, kSize), SliceOf("b", 2, 4)}, live)
                    .ok());
  }

  // A push of `g` at `offset` of `tensor`, committed (with `deferred`).
  absl::Status Push(int worker, int64_t clock, const std::vector<float>& g,
                    const std::string& tensor = "w", uint64_t offset = 0,
                    DeferredStep* deferred = nullptr) {
    auto session = store_.BeginPush("j", worker, clock);
    if (!session.ok()) return session.status();
    absl::Status s = (*session)->AddChunk(tensor, offset, reinterpret_cast<const char*>(g.data()),
                                          g.size() * sizeof(float));
    if (!s.ok()) return s;
    return (*session)->Commit(deferred);
  }

  absl::StatusOr<PulledSlice> PullW(int64_t clock, absl::Duration wait = absl::Seconds(30)) {
    std::vector<PulledSlice> out;
    absl::Status s = store_.Pull("j", 0, clock, {SliceOf("w", 0, kSize)}, absl::Now() + wait, &out);
    if (!s.ok()) return s;
    return out[0];
  }

  // Returns once `n` pulls of job "j" are blocked waiting for fresh data.
  void AwaitWaitingPulls(int64_t n) {
    while (true) {
      auto stats = store_.Stats("j");
      ASSERT_TRUE(stats.ok()) << stats.status();
      if (stats->waiting_pulls >= n) return;
      std::this_thread::yield();
    }
  }

  ShardStore store_;
};

TEST_F(ShardStoreTest, SlicesStartWithTheInitializerValues) {
  Create(SYNC, {0});
  std::vector<PulledSlice> out;
  ASSERT_TRUE(store_
                  .Pull("j", 0, 0, {SliceOf("w", 2, 6), SliceOf("b", 2, 4)},
                        absl::InfiniteFuture(), &out)
                  .ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].values, Initial(2, 6));
  EXPECT_EQ(out[0].version, 0);
  std::vector<float> b(2);
  InitializeSlice(Tensor("b", 4), 7, Range{2, 4}, absl::MakeSpan(b));
  EXPECT_EQ(out[1].values, b);
  EXPECT_EQ(out[1].tensor, "b");
  EXPECT_EQ(out[1].range.begin, 2u);
}

TEST_F(ShardStoreTest, SyncAveragesEveryLiveWorkerInOneStep) {
  Create(SYNC, {0, 1, 2});
  const auto g0 = Grad(1.0f), g1 = Grad(-3.0f), g2 = Grad(0.5f);
  ASSERT_TRUE(Push(2, 0, g2).ok());
  ASSERT_TRUE(Push(0, 0, g0).ok());
  // Two of three: nothing applied yet.
  auto early = PullW(0);
  ASSERT_TRUE(early.ok());
  EXPECT_EQ(early->version, 0);
  EXPECT_EQ(early->values, Initial(0, kSize));
  ASSERT_TRUE(Push(1, 0, g1).ok());

  // Reference: the same optimizer on the mean gradient (summed in rank order).
  auto opt = Optimizer::Create(Spec(SYNC).optimizer());
  ASSERT_TRUE(opt.ok());
  auto state = (*opt)->NewState(kSize);
  std::vector<float> w = Initial(0, kSize), mean(kSize);
  for (uint64_t i = 0; i < kSize; ++i) mean[i] = (g0[i] + g1[i] + g2[i]) / 3.0f;
  (*opt)->Apply(absl::MakeSpan(w), mean, state.get());

  auto after = PullW(1);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->version, 1);
  EXPECT_EQ(after->values, w);
}

TEST_F(ShardStoreTest, SyncPullBlocksUntilEveryWorkerPushed) {
  Create(SYNC, {0, 1});
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  absl::Notification started, done;
  absl::StatusOr<PulledSlice> result;
  std::thread puller([&] {
    started.Notify();
    result = PullW(1);
    done.Notify();
  });
  started.WaitForNotification();
  AwaitWaitingPulls(1);
  EXPECT_FALSE(done.HasBeenNotified());
  ASSERT_TRUE(Push(1, 0, Grad(1.0f)).ok());
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 1);
  // Same gradient from both: one step of lr 0.5 with that gradient.
  std::vector<float> w = Initial(0, kSize);
  const auto g = Grad(1.0f);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(result->values, w);
}

TEST_F(ShardStoreTest, PullDeadlineNamesWhatItWaitsFor) {
  Create(SYNC, {0, 1, 2});
  ASSERT_TRUE(Push(1, 0, Grad(1.0f)).ok());
  auto r = PullW(1, absl::Milliseconds(20));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("job 'j'"));
  EXPECT_THAT(r.status().message(), HasSubstr("'w' [0,8)"));
  EXPECT_THAT(r.status().message(), HasSubstr("clock 1"));
  EXPECT_THAT(r.status().message(), HasSubstr("version 0"));
  EXPECT_THAT(r.status().message(), HasSubstr("[0, 2]"));
}

TEST_F(ShardStoreTest, SetLiveWorkersCompletesAStepADeadWorkerBlocked) {
  Create(SYNC, {0, 1});
  ASSERT_TRUE(Push(0, 0, Grad(2.0f)).ok());
  absl::Notification done;
  absl::StatusOr<PulledSlice> result;
  std::thread puller([&] {
    result = PullW(1);
    done.Notify();
  });
  AwaitWaitingPulls(1);
  ASSERT_TRUE(store_.SetLiveWorkers("j", {0}).ok());
  done.WaitForNotification();
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 1);
  std::vector<float> w = Initial(0, kSize);
  const auto g = Grad(2.0f);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(result->values, w);
  // The dead worker's pushes are refused.
  EXPECT_EQ(Push(1, 1, Grad(1.0f)).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShardStoreTest, SetLiveWorkersDropsTheGradientOfAWorkerThatLeft) {
  Create(SYNC, {0, 1, 2});
  ASSERT_TRUE(Push(1, 0, Grad(100.0f)).ok());
  ASSERT_TRUE(Push(0, 0, Grad(2.0f)).ok());
  ASSERT_TRUE(store_.SetLiveWorkers("j", {0, 2}).ok());
  ASSERT_EQ(PullW(1, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(Push(2, 0, Grad(4.0f)).ok());
  auto r = PullW(1);
  ASSERT_TRUE(r.ok());
  std::vector<float> w = Initial(0, kSize);
  const auto g = Grad(3.0f);  // mean of Grad(2) and Grad(4)
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(r->values, w);
}

TEST_F(ShardStoreTest, AsyncAppliesEachPushOnArrival) {
  Create(ASYNC, {0, 1});
  ASSERT_TRUE(Push(1, 0, Grad(1.0f)).ok());
  auto r = PullW(5);  // never waits
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 1);
  std::vector<float> w = Initial(0, kSize);
  const auto g = Grad(1.0f);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(r->values, w);
  ASSERT_TRUE(Push(1, 1, Grad(1.0f)).ok());
  EXPECT_EQ(PullW(0)->version, 2);
}

TEST_F(ShardStoreTest, SspPullWaitsForTheSlowestLiveWorker) {
  Create(SSP, {0, 1}, /*staleness=*/1);
  // Clock 1 needs pushes for clocks <= -1: none.
  EXPECT_TRUE(PullW(1, absl::ZeroDuration()).ok());
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  ASSERT_TRUE(Push(0, 1, Grad(1.0f)).ok());
  // Clock 2 needs every live worker's clock 0.
  auto r = PullW(2, absl::ZeroDuration());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("1 (at clock -1)"));
  ASSERT_TRUE(Push(1, 0, Grad(1.0f)).ok());
  r = PullW(2, absl::ZeroDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, 3);
  // Worker 1 is at clock 0, worker 0 at 1: the view is clock 0, staleness 1.
  EXPECT_EQ(r->view_clock, 0);
  auto stats = store_.Stats("j");
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->staleness_histogram.size(), static_cast<size_t>(kStalenessBuckets));
  // Both pulls missed one clock of worker 1: clock 0 (at clock 1), clock 1 (at 2).
  EXPECT_EQ(stats->staleness_histogram[0], 0u);
  EXPECT_EQ(stats->staleness_histogram[1], 2u);
}

TEST_F(ShardStoreTest, SspSetLiveWorkersUnblocksAPullWaitingForADeadWorker) {
  Create(SSP, {0, 1}, /*staleness=*/0);
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  absl::Notification done;
  absl::StatusOr<PulledSlice> result;
  std::thread puller([&] {
    result = PullW(1);  // needs worker 1's clock 0
    done.Notify();
  });
  AwaitWaitingPulls(1);
  EXPECT_FALSE(done.HasBeenNotified());
  ASSERT_TRUE(store_.SetLiveWorkers("j", {0}).ok());
  done.WaitForNotification();
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->view_clock, 0);
}

TEST_F(ShardStoreTest, AsyncPullsNeverWaitAndReportTheirStaleness) {
  Create(ASYNC, {0, 1});
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  ASSERT_TRUE(Push(0, 1, Grad(1.0f)).ok());
  // Worker 1 has pushed nothing: the view is -1, a read at clock 5 is 5 behind.
  auto r = PullW(5, absl::ZeroDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->view_clock, -1);
  EXPECT_EQ(ObservedStaleness(5, r->view_clock), 5);
}

TEST_F(ShardStoreTest, BadPushesGetTheRightCodeAndLeaveWeightsUntouched) {
  Create(SYNC, {0, 1});
  const auto g = Grad(1.0f);
  const char* bytes = reinterpret_cast<const char*>(g.data());
  struct Case {
    std::string name;
    absl::StatusCode code;
    std::string text;
    std::function<absl::Status()> run;
  };
  std::vector<Case> cases = {
      {"unknown job", absl::StatusCode::kNotFound, "no job 'nope'",
       [&] { return store_.BeginPush("nope", 0, 0).status(); }},
      {"unknown tensor", absl::StatusCode::kNotFound, "no tensor 'x'",
       [&] { return Push(0, 0, g, "x"); }},
      {"past the slice", absl::StatusCode::kInvalidArgument, "[4,12)",
       [&] { return Push(0, 0, g, "w", 4); }},
      {"outside the slice held", absl::StatusCode::kInvalidArgument, "held: [2,4)",
       [&] { return Push(0, 0, {1.0f, 2.0f}, "b", 0); }},
      {"odd byte count", absl::StatusCode::kInvalidArgument, "float32",
       [&] {
         auto s = store_.BeginPush("j", 0, 0);
         absl::Status st = (*s)->AddChunk("w", 0, bytes, 6);
         EXPECT_EQ((*s)->Commit().code(), st.code());  // poisoned
         return st;
       }},
      {"stale clock", absl::StatusCode::kFailedPrecondition, "clock 3",
       [&] { return Push(0, 3, g); }},
      {"non-live worker", absl::StatusCode::kFailedPrecondition, "worker 5 is not live",
       [&] { return Push(5, 0, g); }},
      {"negative clock", absl::StatusCode::kInvalidArgument, "clock -1",
       [&] { return store_.BeginPush("j", 0, -1).status(); }},
      {"partial coverage", absl::StatusCode::kInvalidArgument,
       "push to 'w' covered 2 of 8 elements of slice [0,8)",
       [&] { return Push(0, 0, {1.0f, 2.0f}, "w", 3); }},
      {"overlap", absl::StatusCode::kInvalidArgument, "overlap",
       [&] {
         auto s = store_.BeginPush("j", 0, 0);
         EXPECT_TRUE((*s)->AddChunk("w", 0, bytes, 5 * sizeof(float)).ok());
         return (*s)->AddChunk("w", 4, bytes, 4 * sizeof(float));
       }},
      {"half of a two-slice push", absl::StatusCode::kInvalidArgument, "'b' covered 1 of 2",
       [&] {
         auto s = store_.BeginPush("j", 0, 0);
         EXPECT_TRUE((*s)->AddChunk("w", 0, bytes, kSize * sizeof(float)).ok());
         EXPECT_TRUE((*s)->AddChunk("b", 2, bytes, sizeof(float)).ok());
         return (*s)->Commit();
       }},
      {"empty push", absl::StatusCode::kInvalidArgument, "carried no values",
       [&] { return (*store_.BeginPush("j", 0, 0))->Commit(); }},
  };
  for (const Case& c : cases) {
    absl::Status s = c.run();
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.text)) << c.name;
  }
  // Nothing was applied or left pending: worker 1's push alone does not step.
  ASSERT_TRUE(Push(1, 0, g).ok());
  auto r = PullW(0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 0);
  EXPECT_EQ(r->values, Initial(0, kSize));
  // Worker 0 can still push its clock 0 (no stale partial state), once.
  ASSERT_TRUE(Push(0, 0, g).ok());
  EXPECT_EQ(PullW(1)->version, 1);
  EXPECT_EQ(Push(0, 0, g).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShardStoreTest, DuplicatePushOfTheSameClockIsAlreadyExists) {
  Create(SYNC, {0, 1});
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  EXPECT_EQ(Push(0, 0, Grad(1.0f)).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ShardStoreTest, ChunksMayArriveOutOfOrderAndUnaligned) {
  Create(ASYNC, {0});
  const auto g = Grad(1.0f);
  std::vector<char> raw(kSize * sizeof(float) + 1);
  std::memcpy(raw.data() + 1, g.data(), kSize * sizeof(float));  // misaligned by one byte
  auto s = store_.BeginPush("j", 0, 0);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->AddChunk("w", 5, raw.data() + 1 + 5 * 4, 3 * 4).ok());
  ASSERT_TRUE((*s)->AddChunk("w", 0, raw.data() + 1, 2 * 4).ok());
  ASSERT_TRUE((*s)->AddChunk("w", 2, raw.data() + 1 + 2 * 4, 3 * 4).ok());
  ASSERT_TRUE((*s)->Commit().ok());
  EXPECT_EQ((*s)->elements(), kSize);
  std::vector<float> w = Initial(0, kSize);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(PullW(1)->values, w);
}

// Bytes held in pieces of uneven sizes, most not a whole number of floats,
// as gRPC's receive slices cut a payload (at frame and read boundaries).
class PiecesHeldBytes final : public HeldBytes {
 public:
  explicit PiecesHeldBytes(std::string bytes) : bytes_(std::move(bytes)) {
    static constexpr size_t kSizes[] = {1, 6, 3, 4097, 2, 10, 4, 8191};
    for (size_t pos = 0, i = 0; pos < bytes_.size(); ++i) {
      pos = std::min(bytes_.size(), pos + kSizes[i % std::size(kSizes)]);
      ends_.push_back(pos);
    }
  }
  size_t size() const override { return bytes_.size(); }
  void ForEachPiece(size_t pos, size_t n,
                    absl::FunctionRef<void(const char* data, size_t len)> fn) const override {
    for (size_t end : ends_) {
      if (n == 0) break;
      if (end <= pos) continue;
      const size_t k = std::min(n, end - pos);
      fn(bytes_.data() + pos, k);
      pos += k;
      n -= k;
    }
  }

 private:
  const std::string bytes_;
  std::vector<size_t> ends_;
};

// A slice of several step blocks, Adam (state per element), three workers:
// worker 0 pushes only held chunks, worker 1 held and copied ones mixed,
// worker 2 only copied ones, all at boundaries that are not block
// boundaries, held ones in pieces that split values. The result must be the
// reference's bit for bit: SYNC the mean summed in rank order, then
// Optimizer::Apply on the whole slice; ASYNC Apply per push, in order.
void ExpectHeldAndCopiedChunksMakeTheReferenceSteps(ShardStore& store, ConsistencyMode mode) {
  constexpr uint64_t n = 10000;
  JobSpec spec = Spec(mode);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.01f);
  spec.mutable_optimizer()->set_beta1(0.9f);
  spec.mutable_optimizer()->set_beta2(0.999f);
  spec.mutable_optimizer()->set_epsilon(1e-8f);
  const TensorSpec big = Tensor("big", n);
  ASSERT_TRUE(store.CreateJob("big", spec, {big}, {SliceOf("big", 0, n)}, {0, 1, 2}).ok());
  auto grad = [](int worker, int64_t clock) {
    std::vector<float> g(n);
    for (uint64_t i = 0; i < n; ++i) {
      g[i] = 0.001f * static_cast<float>((i * (worker + 3) + clock * 7) % 101) - 0.05f;
    }
    return g;
  };
  struct Chunk {
    uint64_t begin, end;
    bool held;
  };
  const std::vector<std::vector<Chunk>> layouts = {
      {{5000, n, true}, {0, 3001, true}, {3001, 5000, true}},
      {{0, 2500, false}, {7000, n, false}, {2500, 7000, true}},
      {{0, 4097, false}, {4097, n, false}}};

  auto opt = Optimizer::Create(spec.optimizer());
  ASSERT_TRUE(opt.ok());
  auto state = (*opt)->NewState(n);
  std::vector<float> w(n);
  InitializeSlice(big, 7, Range{0, n}, absl::MakeSpan(w));
  for (int64_t clock = 0; clock < 2; ++clock) {
    std::vector<float> sum(n, 0.0f);
    for (int worker = 0; worker < 3; ++worker) {
      const std::vector<float> g = grad(worker, clock);
      for (uint64_t i = 0; i < n; ++i) sum[i] = worker == 0 ? g[i] : sum[i] + g[i];
      auto session = store.BeginPush("big", worker, clock);
      ASSERT_TRUE(session.ok()) << session.status();
      for (const Chunk& c : layouts[worker]) {
        const char* bytes = reinterpret_cast<const char*>(g.data() + c.begin);
        const size_t nbytes = (c.end - c.begin) * sizeof(float);
        ASSERT_TRUE((c.held ? (*session)->AddChunkHeld(
                                  "big", c.begin,
                                  std::make_shared<PiecesHeldBytes>(std::string(bytes, nbytes)))
                            : (*session)->AddChunk("big", c.begin, bytes, nbytes))
                        .ok());
      }
      ASSERT_TRUE((*session)->Commit().ok());
      if (mode != SYNC) (*opt)->Apply(absl::MakeSpan(w), g, state.get());
    }
    if (mode == SYNC) {
      for (float& x : sum) x /= 3.0f;
      (*opt)->Apply(absl::MakeSpan(w), sum, state.get());
    }
  }
  std::vector<PulledSlice> out;
  ASSERT_TRUE(
      store.Pull("big", 0, 2, {SliceOf("big", 0, n)}, absl::Now() + absl::Seconds(30), &out)
          .ok());
  EXPECT_EQ(out[0].version, mode == SYNC ? 2 : 6);
  EXPECT_EQ(out[0].values, w);
}

TEST_F(ShardStoreTest, HeldAndCopiedChunksMakeTheSameSyncStepAsWholeBuffers) {
  ExpectHeldAndCopiedChunksMakeTheReferenceSteps(store_, SYNC);
}

TEST_F(ShardStoreTest, HeldAndCopiedChunksMakeTheSameAsyncStepsAsWholeBuffers) {
  ExpectHeldAndCopiedChunksMakeTheReferenceSteps(store_, ASYNC);
}

// A push in two parts (two streams): half of "w" each.
TEST_F(ShardStoreTest, APushInPartsAppliesOnlyWhenTheLastPartEnds) {
  Create(ASYNC, {0});
  const std::vector<float> g = Grad(1.0f);
  const char* bytes = reinterpret_cast<const char*>(g.data());
  auto a = store_.JoinPush("j", 0, 0, /*push_id=*/41, /*parts=*/2);
  auto b = store_.JoinPush("j", 0, 0, 41, 2);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->get(), b->get());
  // A third stream of a push in two parts is refused.
  EXPECT_EQ(store_.JoinPush("j", 0, 0, 41, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*b)->AddChunk("w", 4, bytes + 16, 16).ok());
  ASSERT_TRUE((*b)->EndPart().ok());
  EXPECT_EQ(PullW(0)->values, Initial(0, kSize));  // half a push: nothing yet
  ASSERT_TRUE((*a)->AddChunk("w", 0, bytes, 16).ok());
  ASSERT_TRUE((*a)->AddChunk("b", 2, bytes, 8).ok());
  ASSERT_TRUE((*a)->EndPart().ok());
  std::vector<float> want = Initial(0, kSize);
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * g[i];
  EXPECT_EQ(PullW(1)->values, want);
  EXPECT_EQ(store_.Stats("j")->pushes, 1u);
  EXPECT_EQ((*a)->EndPart().code(), absl::StatusCode::kFailedPrecondition);
  // The session left the open pushes: the same id opens a fresh one.
  auto again = store_.JoinPush("j", 0, 1, 41, 2);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(again->get(), a->get());
}

TEST_F(ShardStoreTest, AFailedPartDiscardsTheWholePush) {
  Create(ASYNC, {0});
  const std::vector<float> g = Grad(1.0f);
  const char* bytes = reinterpret_cast<const char*>(g.data());
  auto a = store_.JoinPush("j", 0, 0, 7, 2);
  auto b = store_.JoinPush("j", 0, 0, 7, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->AddChunk("w", 0, bytes, 16).ok());
  ASSERT_TRUE((*a)->AddChunk("b", 2, bytes, 8).ok());
  ASSERT_TRUE((*a)->EndPart().ok());  // not the last part: OK, applies nothing
  ASSERT_TRUE((*b)->AddChunk("w", 4, bytes + 16, 8).ok());
  (*b)->FailPart(absl::CancelledError("stream broken"));
  EXPECT_EQ((*b)->AddChunk("w", 6, bytes + 24, 8).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(PullW(0)->values, Initial(0, kSize));
  EXPECT_EQ(store_.Stats("j")->pushes, 0u);

  // A part that fails first makes the other's end fail too.
  auto c = store_.JoinPush("j", 0, 0, 8, 2);
  auto d = store_.JoinPush("j", 0, 0, 8, 2);
  ASSERT_TRUE(c.ok() && d.ok());
  EXPECT_EQ((*c)->AddChunk("w", 0, bytes, 6).code(), absl::StatusCode::kInvalidArgument);
  (*c)->FailPart(absl::InvalidArgumentError("bad chunk"));
  ASSERT_TRUE((*d)->AddChunk("w", 0, bytes, 16).code() == absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*d)->EndPart().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PullW(0)->values, Initial(0, kSize));
  // The store is not left in a bad state: a plain push still applies.
  ASSERT_TRUE(Push(0, 0, g).ok());
}

TEST_F(ShardStoreTest, UnfinishedPushesInPartsAreDroppedWhenTheirWorkerMovesOn) {
  Create(ASYNC, {0, 1});
  const std::vector<float> g = Grad(1.0f);
  const char* bytes = reinterpret_cast<const char*>(g.data());
  // Worker 0's first part arrives; the second never does.
  auto stale = store_.JoinPush("j", 0, 0, 100, 2);
  ASSERT_TRUE(stale.ok());
  ASSERT_TRUE((*stale)->AddChunk("w", 0, bytes, 16).ok());
  ASSERT_TRUE((*stale)->EndPart().ok());
  // Its next push (another id) abandons it.
  auto next = store_.JoinPush("j", 0, 1, 101, 2);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ((*stale)->AddChunk("w", 4, bytes, 16).code(), absl::StatusCode::kAborted);
  // A late second part of the abandoned push opens a session of its own,
  // which can never complete the push: nothing of push 100 is applied.
  auto late = store_.JoinPush("j", 0, 0, 100, 2);
  ASSERT_TRUE(late.ok());
  EXPECT_NE(late->get(), stale->get());
  // A worker that leaves the live set loses its open pushes.
  auto other = store_.JoinPush("j", 1, 0, 5, 2);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(store_.SetLiveWorkers("j", {0}).ok());
  EXPECT_EQ((*other)->EndPart().code(), absl::StatusCode::kFailedPrecondition);
  // Dropping the job fails what is left open.
  ASSERT_TRUE(store_.DropJob("j").ok());
  EXPECT_EQ((*next)->EndPart().code(), absl::StatusCode::kAborted);
}

// A worker with two pushes in flight (PsClientOptions::pushes_in_flight):
// the newer names the older as its prior, and both stay open until each
// has all its parts; a third push that names only the second abandons
// whatever else of the worker is still open.
TEST_F(ShardStoreTest, APushNamingItsPriorKeepsThatPushOpen) {
  Create(ASYNC, {0});
  const std::vector<float> g1 = Grad(1.0f), g2 = Grad(2.0f);
  auto bytes = [](const std::vector<float>& g) { return reinterpret_cast<const char*>(g.data()); };
  // Push 10's first part, then push 11's first part, then both second parts:
  // push 10's second part joins its push and abandons nothing.
  auto a10 = store_.JoinPush("j", 0, 0, 10, 2);
  ASSERT_TRUE(a10.ok()) << a10.status();
  ASSERT_TRUE((*a10)->AddChunk("w", 0, bytes(g1), 16).ok());
  ASSERT_TRUE((*a10)->EndPart().ok());
  auto a11 = store_.JoinPush("j", 0, 1, 11, 2, /*prior_push_id=*/10);
  ASSERT_TRUE(a11.ok()) << a11.status();
  ASSERT_TRUE((*a11)->AddChunk("w", 0, bytes(g2), 16).ok());
  ASSERT_TRUE((*a11)->EndPart().ok());
  auto b10 = store_.JoinPush("j", 0, 0, 10, 2);
  ASSERT_TRUE(b10.ok()) << b10.status();
  EXPECT_EQ(b10->get(), a10->get());
  ASSERT_TRUE((*b10)->AddChunk("w", 4, bytes(g1) + 16, 16).ok());
  ASSERT_TRUE((*b10)->EndPart().ok());
  std::vector<float> want = Initial(0, kSize);
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * g1[i];
  EXPECT_EQ(PullW(1)->values, want);  // push 10 alone so far
  auto b11 = store_.JoinPush("j", 0, 1, 11, 2, /*prior_push_id=*/10);
  ASSERT_TRUE(b11.ok()) << b11.status();
  ASSERT_TRUE((*b11)->AddChunk("w", 4, bytes(g2) + 16, 16).ok());
  ASSERT_TRUE((*b11)->EndPart().ok());
  for (uint64_t i = 0; i < kSize; ++i) want[i] -= 0.5f * g2[i];
  EXPECT_EQ(PullW(2)->values, want);
  EXPECT_EQ(store_.Stats("j")->pushes, 2u);

  // Push 13 names 12 as its prior and keeps it open. A late part of push 5,
  // one the worker gave up on long ago, names neither: it abandons both, as
  // a late stream abandons a newer push with one push in flight. Push 14
  // then names 13, so the stray push 5 is abandoned in turn.
  auto a12 = store_.JoinPush("j", 0, 2, 12, 2, 11);
  auto a13 = store_.JoinPush("j", 0, 3, 13, 2, 12);
  ASSERT_TRUE(a12.ok() && a13.ok());
  ASSERT_TRUE((*a12)->EndPart().ok());  // 12 still open after 13 arrived
  auto a5 = store_.JoinPush("j", 0, 0, 5, 2, 4);
  ASSERT_TRUE(a5.ok());
  EXPECT_EQ((*a12)->AddChunk("w", 4, bytes(g1), 16).code(), absl::StatusCode::kAborted);
  EXPECT_EQ((*a13)->EndPart().code(), absl::StatusCode::kAborted);
  auto a14 = store_.JoinPush("j", 0, 4, 14, 2, 13);
  ASSERT_TRUE(a14.ok());
  EXPECT_EQ((*a5)->EndPart().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(PullW(3)->values, want);  // nothing of 12, 13 or 5
}

TEST_F(ShardStoreTest, JoinPushRejectsBadParts) {
  Create(ASYNC, {0});
  for (int parts : {0, -1, kMaxPushParts + 1}) {
    EXPECT_EQ(store_.JoinPush("j", 0, 0, 1, parts).status().code(),
              absl::StatusCode::kInvalidArgument)
        << parts;
  }
  ASSERT_TRUE(store_.JoinPush("j", 0, 0, 2, 3).ok());
  // Streams of one push must agree on its clock and parts.
  EXPECT_EQ(store_.JoinPush("j", 0, 1, 2, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.JoinPush("j", 0, 0, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.JoinPush("j", 5, 0, 3, 2).status().code(),
            absl::StatusCode::kFailedPrecondition);  // not live
  EXPECT_EQ(store_.JoinPush("nope", 0, 0, 3, 2).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ShardStoreTest, CreateJobIsIdempotent) {
  Create(SYNC, {0, 1});
  // Same again (slices in another order): OK, and the live set is adopted.
  EXPECT_TRUE(store_
                  .CreateJob("j", Spec(SYNC), {Tensor("w", kSize), Tensor("b", 4)},
                             {SliceOf("b", 2, 4), SliceOf("w", 0, kSize)}, {0})
                  .ok());
  EXPECT_EQ(Push(1, 0, Grad(1.0f)).code(), absl::StatusCode::kFailedPrecondition);
  absl::Status s = store_.CreateJob("j", Spec(SYNC), {Tensor("w", kSize), Tensor("b", 4)},
                                    {SliceOf("w", 0, 4)}, {0});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'w' [0,4)"));
  s = store_.CreateJob("j", Spec(ASYNC), {Tensor("w", kSize), Tensor("b", 4)},
                       {SliceOf("w", 0, kSize), SliceOf("b", 2, 4)}, {0});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ShardStoreTest, CreateJobRejectsBadInput) {
  auto code = [&](const std::vector<TensorSlice>& slices, uint64_t size = kSize) {
    return store_.CreateJob("k", Spec(SYNC), {Tensor("w", size)}, slices, {0}).code();
  };
  EXPECT_EQ(code({SliceOf("x", 0, 1)}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({SliceOf("w", 0, kSize + 1)}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({SliceOf("w", 3, 3)}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({SliceOf("w", 0, 4), SliceOf("w", 3, 6)}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({SliceOf("w", 0, uint64_t{1} << 40)}, uint64_t{1} << 40),
            absl::StatusCode::kResourceExhausted);
  JobSpec no_optimizer = Spec(SYNC);
  no_optimizer.clear_optimizer();
  EXPECT_EQ(store_.CreateJob("k", no_optimizer, {Tensor("w", 4)}, {}, {0}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.CreateJob("k", Spec(SYNC), {Tensor("w", 4)}, {}, {-1}).code(),
            absl::StatusCode::kInvalidArgument);
  JobSpec preconditioned_sgd = Spec(SYNC);  // the split needs Adam
  preconditioned_sgd.mutable_compression()->set_codec(COMPRESSION_TOPK);
  preconditioned_sgd.mutable_compression()->set_precondition_on_worker(true);
  absl::Status st = store_.CreateJob("k", preconditioned_sgd, {Tensor("w", 4)}, {}, {0});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), ::testing::HasSubstr("precondition_on_worker"));
  EXPECT_THAT(store_.JobIds(), ::testing::IsEmpty());
}

TEST_F(ShardStoreTest, PullValidatesRequests) {
  Create(SYNC, {0});
  std::vector<PulledSlice> out;
  const absl::Time soon = absl::Now() + absl::Seconds(5);
  EXPECT_EQ(store_.Pull("nope", 0, 0, {SliceOf("w", 0, 1)}, soon, &out).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Pull("j", 0, 0, {SliceOf("x", 0, 1)}, soon, &out).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Pull("j", 0, 0, {SliceOf("b", 0, 3)}, soon, &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.Pull("j", 0, 0, {SliceOf("w", 2, 2)}, soon, &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.Pull("j", 0, 0, {}, soon, &out).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShardStoreTest, DropJobAndShutdownWakeWaiters) {
  Create(SYNC, {0});
  absl::StatusOr<PulledSlice> dropped;
  std::thread a([&] { dropped = PullW(1); });
  AwaitWaitingPulls(1);
  ASSERT_TRUE(store_.DropJob("j").ok());
  a.join();
  EXPECT_EQ(dropped.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(dropped.status().message()), HasSubstr("dropped"));
  EXPECT_EQ(store_.DropJob("j").code(), absl::StatusCode::kNotFound);

  Create(SYNC, {0});
  auto session = store_.BeginPush("j", 0, 0);  // open across the shutdown
  ASSERT_TRUE(session.ok());
  absl::StatusOr<PulledSlice> cancelled;
  std::thread b([&] { cancelled = PullW(1); });
  AwaitWaitingPulls(1);
  store_.Shutdown();
  b.join();
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  const auto g = Grad(1.0f);
  EXPECT_EQ((*session)->AddChunk("w", 0, reinterpret_cast<const char*>(g.data()), 32).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(store_.BeginPush("j", 0, 0).status().code(), absl::StatusCode::kCancelled);
}

// A large slice's steps run on the executor, not in Commit (a small one's
// run inline when nothing is queued); a pull opened after a Commit returns
// must still see it, for every mode, with pushes from several threads.
// Worker 0 commits as the service does, running the step it may hold once
// "answered"; worker 1 leaves every step to the store. Slices small enough to
// run steps inline, large enough for the executor, and too large to be held.
TEST_F(ShardStoreTest, EveryPullSeesThePushesCommittedBeforeIt) {
  for (ConsistencyMode mode : {ASYNC, SSP})
  for (const uint64_t size : {kSize, uint64_t{100000}, (uint64_t{1} << 20) + 8}) {
    SCOPED_TRACE(absl::StrCat(ConsistencyMode_Name(mode), " ", size));
    const int pushes = size > 100000 ? 20 : 300;
    ShardStore store;  // its own, with the default executor
    JobSpec spec = Spec(mode, /*staleness=*/1000);
    spec.mutable_optimizer()->set_learning_rate(1.0f);
    TensorSpec zero = Tensor("w", size);
    zero.set_init(TensorSpec::ZEROS);
    ASSERT_TRUE(store.CreateJob("j", spec, {zero}, {SliceOf("w", 0, size)}, {0, 1}).ok());
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
      threads.emplace_back([&, w] {
        const std::vector<float> ones(size, 1.0f);
        for (int c = 0; c < pushes; ++c) {
          auto session = store.BeginPush("j", w, c);
          ASSERT_TRUE(session.ok());
          ASSERT_TRUE((*session)
                          ->AddChunk("w", 0, reinterpret_cast<const char*>(ones.data()),
                                     size * sizeof(float))
                          .ok());
          DeferredStep step;
          ASSERT_TRUE((*session)->Commit(w == 0 ? &step : nullptr).ok());
          if (size > (uint64_t{1} << 20)) {
            ASSERT_TRUE(step.empty());  // too large to hold
          }
          step.Run();
          // This worker's c + 1 pushes are in; each took 1 off every weight.
          std::vector<PulledSlice> out;
          ASSERT_TRUE(store
                          .Pull("j", w, c + 1, {SliceOf("w", 0, size)},
                                absl::Now() + absl::Seconds(30), &out)
                          .ok());
          ASSERT_LE(out[0].values[0], -static_cast<float>(c + 1));
          ASSERT_LE(out[0].values[size - 1], -static_cast<float>(c + 1));
          ASSERT_GE(out[0].version, c + 1);
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(store.Stats("j")->min_version, 2 * pushes);
  }
}

// A step left to the committer: pulls wait for it, later steps of the slice
// queue behind it, and Run applies them all in commit order.
TEST_F(ShardStoreTest, ACommitterRunsTheStepItHoldsAndThoseQueuedBehindIt) {
  Create(ASYNC, {0, 1});
  const std::vector<float> g0 = Grad(1.0f), g1 = Grad(-3.0f);
  DeferredStep step;
  ASSERT_TRUE(Push(0, 0, g0, "w", 0, &step).ok());
  ASSERT_FALSE(step.empty());
  absl::Notification pulled;
  absl::StatusOr<PulledSlice> result;
  std::thread puller([&] {
    result = PullW(0);
    pulled.Notify();
  });
  ASSERT_TRUE(Push(1, 0, g1).ok());  // no DeferredStep: behind the held one
  EXPECT_FALSE(pulled.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  step.Run();
  EXPECT_TRUE(step.empty());
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 2);
  std::vector<float> w = Initial(0, kSize);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g0[i];
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g1[i];
  EXPECT_EQ(result->values, w);
}

// A held step that is never Run explicitly runs when the DeferredStep goes.
// A push over two tiny slices leaves one step to the committer (the first
// slice's) and runs the other's at once.
TEST_F(ShardStoreTest, AHeldStepRunsWhenItsDeferredStepGoes) {
  Create(ASYNC, {0});
  const std::vector<float> g = Grad(2.0f), gb = {1.0f, 2.0f};
  {
    auto session = store_.BeginPush("j", 0, 0);
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*session)
                    ->AddChunk("w", 0, reinterpret_cast<const char*>(g.data()),
                               g.size() * sizeof(float))
                    .ok());
    ASSERT_TRUE(
        (*session)->AddChunk("b", 2, reinterpret_cast<const char*>(gb.data()), 8).ok());
    DeferredStep step;
    ASSERT_TRUE((*session)->Commit(&step).ok());
    EXPECT_FALSE(step.empty());
    EXPECT_LT(step.elements(), kSize + 2);  // one of the two
  }
  std::vector<PulledSlice> out;
  ASSERT_TRUE(store_
                  .Pull("j", 0, 0, {SliceOf("w", 0, kSize), SliceOf("b", 2, 4)},
                        absl::Now() + absl::Seconds(30), &out)
                  .ok());
  EXPECT_EQ(out[0].version, 1);
  EXPECT_EQ(out[1].version, 1);
  std::vector<float> w = Initial(0, kSize);
  for (uint64_t i = 0; i < kSize; ++i) w[i] -= 0.5f * g[i];
  EXPECT_EQ(out[0].values, w);
}

// The committer holds steps of up to 1 Mi elements in all, past the first
// none under 4 Ki elements: of slices of 600 Ki, 600 Ki, 5000 and 10
// elements it takes the first and the third; the store runs the second
// meanwhile, and the commit the last. All four land.
TEST(ShardStoreHeldStepsTest, ACommitterHoldsStepsUpToItsBudget) {
  ShardStore store;
  JobSpec spec = Spec(ASYNC, 0);
  spec.mutable_optimizer()->set_learning_rate(1.0f);
  const uint64_t big = uint64_t{600} << 10;
  std::vector<TensorSpec> tensors = {Tensor("a", big), Tensor("b", big), Tensor("c", 5000),
                                     Tensor("d", 10)};
  std::vector<TensorSlice> slices;
  for (TensorSpec& t : tensors) {
    t.set_init(TensorSpec::ZEROS);
    slices.push_back(SliceOf(t.name(), 0, t.size()));
  }
  ASSERT_TRUE(store.CreateJob("j", spec, tensors, slices, {0}).ok());
  auto session = store.BeginPush("j", 0, 0);
  ASSERT_TRUE(session.ok());
  const std::vector<float> ones(big, 1.0f);
  for (const TensorSpec& t : tensors) {
    ASSERT_TRUE((*session)
                    ->AddChunk(t.name(), 0, reinterpret_cast<const char*>(ones.data()),
                               t.size() * sizeof(float))
                    .ok());
  }
  DeferredStep step;
  ASSERT_TRUE((*session)->Commit(&step).ok());
  EXPECT_EQ(step.elements(), big + 5000);
  step.Run();
  EXPECT_TRUE(step.empty());
  std::vector<PulledSlice> out;
  ASSERT_TRUE(store.Pull("j", 0, 1, slices, absl::Now() + absl::Seconds(30), &out).ok());
  for (const PulledSlice& p : out) {
    EXPECT_EQ(p.version, 1);
    EXPECT_EQ(p.values.front(), -1.0f);
    EXPECT_EQ(p.values.back(), -1.0f);
  }
}

TEST_F(ShardStoreTest, StatsCountTraffic) {
  Create(ASYNC, {0});
  ASSERT_TRUE(Push(0, 0, Grad(1.0f)).ok());
  ASSERT_TRUE(PullW(1).ok());
  auto stats = store_.Stats("j");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pushes, 1u);
  EXPECT_EQ(stats->pulls, 1u);
  EXPECT_EQ(stats->push_bytes, kSize * 4);
  EXPECT_EQ(stats->pull_bytes, kSize * 4);
  EXPECT_EQ(stats->min_version, 0);  // "b" was never pushed
}

// Several workers run many sync clocks against two slices while pulling; the
// result must equal the serial computation.
TEST_F(ShardStoreTest, ConcurrentSyncTrainingMatchesSerial) {
  constexpr int kWorkers = 4;
  constexpr int kClocks = 200;
  Create(SYNC, {0, 1, 2, 3});
  auto grad = [](int worker, int clock, uint64_t i) {
    return 0.001f * static_cast<float>((worker + 1) * ((clock % 7) + 1)) -
           0.0001f * static_cast<float>(i);
  };
  std::vector<std::thread> threads;
  std::vector<absl::Status> errors(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<PulledSlice> out;
      for (int c = 0; c < kClocks && errors[w].ok(); ++c) {
        absl::Status s = store_.Pull("j", w, c, {SliceOf("w", 0, kSize), SliceOf("b", 2, 4)},
                                     absl::Now() + absl::Seconds(60), &out);
        if (s.ok() && (out[0].version != c || out[1].version != c)) {
          s = absl::InternalError(absl::StrCat("worker ", w, " clock ", c, " saw version ",
                                               out[0].version));
        }
        std::vector<float> g(kSize);
        for (uint64_t i = 0; i < kSize; ++i) g[i] = grad(w, c, i);
        auto session = store_.BeginPush("j", w, c);
        if (s.ok()) s = session.status();
        if (s.ok()) s = (*session)->AddChunk("b", 2, reinterpret_cast<const char*>(g.data()), 8);
        if (s.ok()) s = (*session)->AddChunk("w", 0, reinterpret_cast<const char*>(g.data()), 32);
        if (s.ok()) s = (*session)->Commit();
        errors[w] = s;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int w = 0; w < kWorkers; ++w) ASSERT_TRUE(errors[w].ok()) << errors[w];

  std::vector<float> w = Initial(0, kSize);
  for (int c = 0; c < kClocks; ++c) {
    for (uint64_t i = 0; i < kSize; ++i) {
      float sum = grad(0, c, i);
      for (int k = 1; k < kWorkers; ++k) sum += grad(k, c, i);
      w[i] -= 0.5f * (sum / kWorkers);
    }
  }
  auto r = PullW(kClocks);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version, kClocks);
  EXPECT_EQ(r->values, w);
  EXPECT_EQ(store_.Stats("j")->pushes, static_cast<uint64_t>(kWorkers * kClocks));
}

}  // namespace
}  // namespace tessera::server
