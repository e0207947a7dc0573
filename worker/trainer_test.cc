#include "worker/trainer.h"

#include "gtest/gtest.h"

namespace tessera::worker {
namespace {

JobSpec Ssp(int staleness, bool cache) {
  JobSpec spec;
  spec.set_mode(SSP);
  spec.set_staleness(staleness);
  spec.set_ssp_cache(cache);
  return spec;
}

TEST(CacheServesTest, OnlyInSspWithTheCacheOnAndWithinTheBound) {
  // A cache with view clock 4 holds every push for clocks <= 4: good for a
  // read at clock c while 4 >= c - s - 1, i.e. c <= 7 with s = 2.
  EXPECT_TRUE(CacheServes(Ssp(2, true), 6, 4));
  EXPECT_TRUE(CacheServes(Ssp(2, true), 7, 4));
  EXPECT_FALSE(CacheServes(Ssp(2, true), 8, 4));
  EXPECT_FALSE(CacheServes(Ssp(2, false), 6, 4));  // cache off
  EXPECT_FALSE(CacheServes(Ssp(2, true), 0, -2));  // nothing cached yet
  EXPECT_TRUE(CacheServes(Ssp(0, true), 0, -1));   // clock 0 needs nothing
  JobSpec sync = Ssp(0, true);
  sync.set_mode(SYNC);
  EXPECT_FALSE(CacheServes(sync, 1, 5));
}

TEST(StragglerInjectorTest, OffByDefault) {
  StragglerInjector injector(StragglerSpec(), 1, 0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(injector.BeforeStep(), absl::ZeroDuration());
  EXPECT_EQ(injector.AfterCompute(absl::Milliseconds(10)), absl::ZeroDuration());
}

TEST(StragglerInjectorTest, TransientPausesAtAboutTheRateAndSeeded) {
  StragglerSpec spec;
  spec.set_transient_probability(0.1);
  spec.set_transient_delay_ms(7);
  StragglerInjector a(spec, 42, 3), b(spec, 42, 3);
  int pauses = 0;
  for (int i = 0; i < 10000; ++i) {
    const absl::Duration d = a.BeforeStep();
    EXPECT_EQ(d, b.BeforeStep());  // same seed and rank, same schedule
    if (d > absl::ZeroDuration()) {
      EXPECT_EQ(d, absl::Milliseconds(7));
      ++pauses;
    }
  }
  EXPECT_GT(pauses, 850);
  EXPECT_LT(pauses, 1150);
}

TEST(StragglerInjectorTest, PersistentSlowsOnlyItsRank) {
  StragglerSpec spec;
  spec.set_persistent_rank(2);
  spec.set_persistent_factor(3.0f);
  EXPECT_EQ(StragglerInjector(spec, 1, 2).AfterCompute(absl::Milliseconds(10)),
            absl::Milliseconds(20));
  EXPECT_EQ(StragglerInjector(spec, 1, 1).AfterCompute(absl::Milliseconds(10)),
            absl::ZeroDuration());
}

// Records what reaches Push; Pull is not used.
class RecordingClient : public ParameterClient {
 public:
  absl::Status Push(int64_t clock, absl::Span<const absl::Span<const float>> grads) override {
    if (grads.size() != 2) return absl::InvalidArgumentError("want 2 tensors");
    last_clock = clock;
    pushed.clear();
    for (auto g : grads) pushed.emplace_back(g.begin(), g.end());
    return absl::OkStatus();
  }
  absl::Status Pull(int64_t, absl::Span<const absl::Span<float>>, int64_t*) override {
    return absl::UnimplementedError("not used");
  }
  int64_t last_clock = -1;
  std::vector<std::vector<float>> pushed;
};

TEST(ParameterClientTest, StreamedPushInAnyOrderBecomesOnePush) {
  RecordingClient client;
  const std::vector<float> a = {1, 2, 3}, b = {4};
  ASSERT_TRUE(client.BeginPush(7).ok());
  ASSERT_TRUE(client.PushTensor(1, b).ok());
  ASSERT_TRUE(client.PushTensor(0, a).ok());
  ASSERT_TRUE(client.FinishPush().ok());
  EXPECT_EQ(client.last_clock, 7);
  ASSERT_EQ(client.pushed.size(), 2u);
  EXPECT_EQ(client.pushed[0], a);
  EXPECT_EQ(client.pushed[1], b);
}

TEST(ParameterClientTest, StreamedPushRejectsGapsRepeatsAndMissingBegin) {
  RecordingClient client;
  const std::vector<float> a = {1};
  EXPECT_EQ(client.PushTensor(0, a).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client.FinishPush().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(client.BeginPush(0).ok());
  ASSERT_TRUE(client.PushTensor(1, a).ok());
  EXPECT_EQ(client.PushTensor(1, a).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.FinishPush().code(), absl::StatusCode::kInvalidArgument);  // tensor 0 missing
  EXPECT_EQ(client.last_clock, -1);

  ASSERT_TRUE(client.BeginPush(1).ok());
  ASSERT_TRUE(client.PushTensor(0, a).ok());
  // One tensor of the plan's two: Push itself refuses.
  EXPECT_EQ(client.FinishPush().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::worker
