// End to end on real processes: a scheduler, servers and workers on 127.0.0.1
// train a short Fashion-MNIST job.

#include <signal.h>

#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/test_cluster.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"

namespace tessera {
namespace {

using testing::BinDir;
using testing::FashionMnistDir;
using testing::RunTessera;
using testing::TestDir;
using tools::LocalCluster;
using tools::LocalClusterOptions;
using tools::SchedulerClient;

JobSpec ShortJob(int epochs) {
  JobSpec spec;
  spec.set_name("short-mlp");
  spec.mutable_model()->set_kind(ModelSpec::MLP);
  spec.mutable_model()->add_hidden_layers(64);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.002f);
  spec.set_batch_size(32);
  spec.set_epochs(epochs);
  spec.set_mode(SYNC);
  spec.set_seed(5);
  spec.set_num_workers(2);
  spec.set_num_servers(2);
  spec.set_log_every_steps(10);
  spec.mutable_data()->set_path(FashionMnistDir());
  spec.mutable_data()->set_train_limit(4000);
  spec.mutable_data()->set_test_limit(1000);
  return spec;
}

LocalClusterOptions Options(const std::string& out) {
  LocalClusterOptions o;
  o.bin_dir = BinDir();
  o.out_dir = out;
  o.servers = 2;
  o.workers = 2;
  o.log_level = "info";
  o.heartbeat_timeout_ms = 3000;
  return o;
}

absl::StatusOr<JobInfo> WaitForEnd(SchedulerClient& client, const std::string& job,
                                   absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    absl::StatusOr<JobInfo> info = client.GetJob(job);
    if (info.ok() && (info->state() == SUCCEEDED || info->state() == FAILED ||
                      info->state() == CANCELLED)) {
      return info;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat(job, " did not finish in time"));
}

double MeanOf(const std::vector<MetricPoint>& pts, size_t from, size_t to, bool loss) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += loss ? pts[i].loss() : pts[i].accuracy();
  return sum / (to - from);
}

TEST(IntegrationTest, ShortJobLearnsAndStatusSaysDone) {
  const TestDir dir;
  const std::string& out = dir.path();
  LocalCluster cluster(Options(out));
  ASSERT_TRUE(cluster.Start().ok());
  SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));
  absl::StatusOr<std::string> job = client.Submit(ShortJob(3));
  ASSERT_TRUE(job.ok()) << job.status();
  absl::StatusOr<JobInfo> info = WaitForEnd(client, *job, absl::Seconds(180));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->state(), SUCCEEDED) << info->error();
  EXPECT_EQ(info->test_examples(), 1000);
  EXPECT_GT(info->test_accuracy(), 0.70);

  absl::StatusOr<std::vector<MetricPoint>> pts = client.GetMetrics(*job, 0);
  ASSERT_TRUE(pts.ok()) << pts.status();
  ASSERT_GE(pts->size(), 9u);
  const size_t n = pts->size();
  EXPECT_LT(MeanOf(*pts, n - 3, n, true), 0.8 * MeanOf(*pts, 0, 3, true)) << "loss did not fall";
  EXPECT_GT(MeanOf(*pts, n - 3, n, false), MeanOf(*pts, 0, 3, false) + 0.05)
      << "accuracy did not rise";

  testing::CliResult status =
      RunTessera({"status", *job, "--scheduler=" + cluster.scheduler_address()});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("succeeded"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("test accuracy"), std::string::npos) << status.output;

  testing::CliResult list = RunTessera({"list", "--scheduler=" + cluster.scheduler_address()});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(*job), std::string::npos) << list.output;
  cluster.Stop();
}

TEST(IntegrationTest, KilledSchedulerRestartsAndStillListsTheJob) {
  const TestDir dir;
  const std::string& out = dir.path();
  LocalCluster cluster(Options(out));
  ASSERT_TRUE(cluster.Start().ok());
  SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));
  absl::StatusOr<std::string> job = client.Submit(ShortJob(4));
  ASSERT_TRUE(job.ok()) << job.status();

  // Let it start training, then kill -9 the scheduler mid-job.
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while (absl::Now() < until) {
    absl::StatusOr<JobInfo> info = client.GetJob(*job);
    if (info.ok() && info->workers_size() > 0 && info->workers(0).step() > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  cluster.KillScheduler(SIGKILL);
  ASSERT_TRUE(cluster.RestartScheduler().ok());

  testing::CliResult list = RunTessera({"list", "--scheduler=" + cluster.scheduler_address()});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(*job), std::string::npos) << list.output;

  // The workers re-register and the job runs to the end.
  absl::StatusOr<JobInfo> info = WaitForEnd(client, *job, absl::Seconds(180));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state(), SUCCEEDED) << info->error();
  cluster.Stop();
}

}  // namespace
}  // namespace tessera
