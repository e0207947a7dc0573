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

}  // namespace
}  // namespace tessera::worker
