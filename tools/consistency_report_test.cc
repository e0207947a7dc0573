#include "tools/consistency_report.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

MetricPoint Point(int64_t step, double wall, float loss) {
  MetricPoint p;
  p.set_step(step);
  p.set_wall_seconds(wall);
  p.set_loss(loss);
  return p;
}

RunOutcome MakeRun(const std::string& mode, int seed, double to_target, double accuracy) {
  RunOutcome r;
  r.model = "softmax";
  r.scenario = "transient";
  r.mode = mode;
  r.seed = seed;
  r.state = "succeeded";
  r.target = 0.5;
  r.wall_to_target = to_target;
  r.train_seconds = 2 * to_target;
  r.final_loss = 0.45;
  r.test_accuracy = accuracy;
  r.pulls = 100;
  return r;
}

TEST(ParseBenchModesTest, NamesBecomeSettingsAndTableLabels) {
  absl::StatusOr<std::vector<BenchMode>> modes = ParseBenchModes("sync, ssp3,async,ssp10_cache,ssp0");
  ASSERT_TRUE(modes.ok()) << modes.status();
  ASSERT_EQ(modes->size(), 5u);
  EXPECT_EQ((*modes)[0].label, "sync");
  EXPECT_EQ((*modes)[0].mode, SYNC);
  EXPECT_EQ((*modes)[1].label, "ssp s=3");
  EXPECT_EQ((*modes)[1].mode, SSP);
  EXPECT_EQ((*modes)[1].staleness, 3);
  EXPECT_FALSE((*modes)[1].cache);
  EXPECT_EQ((*modes)[2].mode, ASYNC);
  EXPECT_EQ((*modes)[3].label, "ssp s=10 +cache");
  EXPECT_EQ((*modes)[3].staleness, 10);
  EXPECT_TRUE((*modes)[3].cache);
  EXPECT_EQ((*modes)[4].staleness, 0);
}

TEST(ParseBenchModesTest, RejectsUnknownMalformedAndRepeatedNames) {
  for (const char* bad : {"", "bsp", "ssp", "sspx", "ssp-1", "ssp3_cached", "sync,sync"}) {
    absl::StatusOr<std::vector<BenchMode>> modes = ParseBenchModes(bad);
    EXPECT_EQ(modes.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(LossCurveTest, AveragesTheLatestWindowInWallTimeOrder) {
  // Given out of order; by wall time the losses are 4, 3, 2, 1.
  const std::vector<MetricPoint> points = {Point(10, 2.0, 2), Point(5, 1.0, 4), Point(20, 4.0, 1),
                                           Point(15, 1.5, 3)};
  const Series s = LossCurve(points, 2, "sync");
  EXPECT_EQ(s.label, "sync");
  EXPECT_EQ(s.x, (std::vector<double>{1.5, 2.0, 4.0}));
  EXPECT_EQ(s.y, (std::vector<double>{3.5, 2.5, 1.5}));
  EXPECT_TRUE(LossCurve(points, 5, "x").x.empty());
}

TEST(TimeToTargetTest, FirstPointAtOrBelowTheTarget) {
  const Series s{"m", {1, 2, 3, 4}, {0.9, 0.5, 0.6, 0.4}};
  EXPECT_EQ(TimeToTarget(s, 0.5), 2);
  EXPECT_EQ(TimeToTarget(s, 0.45), 4);
  EXPECT_EQ(TimeToTarget(s, 0.1), -1);
}

TEST(MeanStepSecondsTest, LeavesStartUpOut) {
  // The first logged step took a second (registration, first pulls); then 4 ms a step.
  std::vector<MetricPoint> points = {Point(5, 1.0, 1)};
  for (int step = 10; step <= 200; step += 5) points.push_back(Point(step, 1.0 + 0.004 * (step - 5), 1));
  absl::StatusOr<double> step_s = MeanStepSeconds(points, 20);
  ASSERT_TRUE(step_s.ok()) << step_s.status();
  EXPECT_NEAR(*step_s, 0.004, 1e-9);
  EXPECT_EQ(MeanStepSeconds(points, 195).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SummarizeTest, MeanAndSampleSd) {
  const MeanSd v = Summarize({1, 2, 3, 4});
  EXPECT_EQ(v.n, 4);
  EXPECT_DOUBLE_EQ(v.mean, 2.5);
  EXPECT_NEAR(v.sd, 1.2909944, 1e-6);
  EXPECT_EQ(Summarize({7}).sd, 0);
  EXPECT_EQ(Summarize({}).n, 0);
}

TEST(SummarizeRunsTest, SpeedUpAndAccuracyArePairedBySeed) {
  // Paired: seed 11 gives 10/5 = 2x, seed 12 gives 12/4 = 3x. Against the mean
  // of sync (11 s) the ratios would be 2.2x and 2.75x instead.
  const std::vector<RunOutcome> runs = {MakeRun("sync", 11, 10, 0.80), MakeRun("ssp s=3", 11, 5, 0.81),
                                        MakeRun("sync", 12, 12, 0.82), MakeRun("ssp s=3", 12, 4, 0.82)};
  const std::vector<ModeSummary> rows = SummarizeRuns(runs);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].mode, "sync");
  EXPECT_EQ(rows[1].mode, "ssp s=3");
  EXPECT_EQ(rows[1].runs, 2);
  EXPECT_EQ(rows[1].speedup.n, 2);
  EXPECT_DOUBLE_EQ(rows[1].speedup.mean, 2.5);
  EXPECT_NEAR(rows[1].speedup.sd, 0.70710678, 1e-6);
  EXPECT_NEAR(rows[1].accuracy_vs_sync.mean, 0.005, 1e-9);
  EXPECT_NEAR(rows[1].accuracy_vs_sync.sd, 0.00707107, 1e-6);
  EXPECT_NEAR(rows[0].test_accuracy.mean, 0.81, 1e-9);
  EXPECT_DOUBLE_EQ(rows[0].speedup.mean, 1.0);

  const std::string md = SummaryMarkdown(rows);
  EXPECT_THAT(md, HasSubstr("| softmax | transient | ssp s=3 | 2 | 0.500 | 4.5 ± 0.7 | 2.50 ± 0.71x |"));
  EXPECT_THAT(md, HasSubstr("| 81.50 ± 0.71 | +0.50 ± 0.71 |"));
  EXPECT_THAT(SummaryCsv(rows), HasSubstr("softmax,transient,ssp s=3,2,0.5000,2,4.50,0.71,2,2.500,0.707,"));
  EXPECT_THAT(RunsCsv(runs), HasSubstr("\nsoftmax,transient,ssp s=3,12,succeeded,0.5000,4.00,"));
}

TEST(SummarizeRunsTest, SeedsThatMissTheTargetAreCountedNotAveraged) {
  const std::vector<RunOutcome> runs = {MakeRun("sync", 11, 10, 0.80), MakeRun("async", 11, -1, 0.70),
                                        MakeRun("sync", 12, 12, 0.80), MakeRun("async", 12, 6, 0.72)};
  const std::vector<ModeSummary> rows = SummarizeRuns(runs);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].wall_to_target.n, 1);
  EXPECT_EQ(rows[1].speedup.n, 1);
  EXPECT_DOUBLE_EQ(rows[1].speedup.mean, 2.0);
  EXPECT_THAT(SummaryMarkdown(rows), HasSubstr("| 6.0 ± 0.0 (1/2) | 2.00 ± 0.00x (1/2) |"));
}

TEST(SummaryMarkdownTest, OneSeedShowsPlainValues) {
  const std::string md =
      SummaryMarkdown(SummarizeRuns({MakeRun("sync", 11, 10, 0.8145), MakeRun("ssp s=3", 11, 4, 0.8248)}));
  EXPECT_THAT(md, HasSubstr("| sync | 1 | 0.500 | 10.0 | 1.00x | 20.0 | 0.4500 | 81.45 | 0 |"));
  EXPECT_THAT(md, HasSubstr("| ssp s=3 | 1 | 0.500 | 4.0 | 2.50x | 8.0 | 0.4500 | 82.48 | +1.03 |"));
  EXPECT_THAT(md, Not(HasSubstr("±")));
}

}  // namespace
}  // namespace tessera::tools
