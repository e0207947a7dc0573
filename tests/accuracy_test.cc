// The published-accuracy acceptance runs: the bundled jobs on the full
// Fashion-MNIST (60k train, official 10k test) on 2 servers x 2 workers, sync.
// Sync training sums pushes in rank order, so the result does not depend on
// timing: these are deterministic, if long (about a minute each).

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/test_cluster.h"
#include "tools/job_yaml.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"

namespace tessera {
namespace {

JobInfo RunBundledJob(const std::string& yaml) {
  absl::StatusOr<JobSpec> spec = tools::LoadJobYaml(std::string(TESSERA_SOURCE_DIR) + "/tools/jobs/" + yaml);
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return JobInfo();
  const testing::TestDir dir;
  tools::LocalClusterOptions o;
  o.bin_dir = testing::BinDir();
  o.out_dir = dir.path();
  o.servers = spec->num_servers();
  o.workers = spec->num_workers();
  tools::LocalCluster cluster(o);
  absl::Status st = cluster.Start();
  EXPECT_TRUE(st.ok()) << st;
  if (!st.ok()) return JobInfo();
  tools::SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));
  absl::StatusOr<std::string> id = client.Submit(*spec);
  EXPECT_TRUE(id.ok()) << id.status();
  const absl::Time until = absl::Now() + absl::Minutes(8);
  while (id.ok() && absl::Now() < until) {
    absl::StatusOr<JobInfo> info = client.GetJob(*id);
    if (info.ok() && (info->state() == SUCCEEDED || info->state() == FAILED)) return *info;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ADD_FAILURE() << "job did not end in time";
  return JobInfo();
}

TEST(AccuracyTest, MlpReaches88PercentOnTheOfficialTestSet) {
  JobInfo info = RunBundledJob("fashion_mlp.yaml");
  ASSERT_EQ(info.state(), SUCCEEDED) << info.error();
  EXPECT_EQ(info.test_examples(), 10000);
  EXPECT_GE(info.test_accuracy(), 0.88f);
  std::printf("mlp: test accuracy %.4f, training %.1f s\n", info.test_accuracy(), info.train_seconds());
}

TEST(AccuracyTest, SoftmaxRegressionReaches84Percent) {
  JobInfo info = RunBundledJob("fashion_softmax.yaml");
  ASSERT_EQ(info.state(), SUCCEEDED) << info.error();
  EXPECT_EQ(info.test_examples(), 10000);
  EXPECT_GE(info.test_accuracy(), 0.84f);
  std::printf("softmax: test accuracy %.4f, training %.1f s\n", info.test_accuracy(), info.train_seconds());
}

}  // namespace
}  // namespace tessera
