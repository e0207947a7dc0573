// Real processes: in every consistency mode, a worker killed with SIGKILL in
// the middle of a job does not hang the other workers. The scheduler notices
// the missing heartbeats, shrinks the servers' live worker set, and the job
// ends (succeeds or fails with an error) within a deadline.

#include <signal.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/job_spec.h"
#include "gtest/gtest.h"
#include "tests/test_cluster.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"

namespace tessera {
namespace {

using testing::BinDir;
using testing::FashionMnistDir;
using testing::TestDir;
using tools::LocalCluster;
using tools::LocalClusterOptions;
using tools::SchedulerClient;

struct ModeCase {
  ConsistencyMode mode;
  int staleness;
};

class WorkerKillTest : public ::testing::TestWithParam<ModeCase> {};

TEST_P(WorkerKillTest, KilledWorkerDoesNotHangTheOthers) {
  const TestDir dir;
  const std::string& out = dir.path();
  LocalClusterOptions o;
  o.bin_dir = BinDir();
  o.out_dir = out;
  o.servers = 2;
  o.workers = 3;
  o.log_level = "info";
  o.heartbeat_timeout_ms = 2000;
  LocalCluster cluster(o);
  ASSERT_TRUE(cluster.Start().ok());
  SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));

  JobSpec spec;
  spec.set_name("kill-one");
  spec.mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
  spec.mutable_optimizer()->set_learning_rate(0.05f);
  spec.set_batch_size(32);
  spec.set_epochs(3);
  spec.set_mode(GetParam().mode);
  spec.set_staleness(GetParam().staleness);
  spec.set_seed(9);
  spec.set_num_workers(3);
  spec.set_num_servers(2);
  spec.set_log_every_steps(5);
  spec.mutable_data()->set_path(FashionMnistDir());
  spec.mutable_data()->set_train_limit(6000);
  spec.mutable_data()->set_test_limit(500);
  // Slow the job down enough that the kill lands mid-job.
  spec.mutable_straggler()->set_transient_probability(0.5);
  spec.mutable_straggler()->set_transient_delay_ms(20);
  absl::StatusOr<std::string> job = client.Submit(spec);
  ASSERT_TRUE(job.ok()) << job.status();

  // Wait until every worker has made progress, then kill one worker process.
  const absl::Time started_by = absl::Now() + absl::Seconds(60);
  bool running = false;
  while (absl::Now() < started_by && !running) {
    absl::StatusOr<JobInfo> info = client.GetJob(*job);
    if (info.ok() && info->workers_size() == 3) {
      running = true;
      for (const WorkerProgress& w : info->workers()) running = running && w.step() >= 5;
    }
    if (!running) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(running) << "the job did not start";
  cluster.worker(1)->Signal(SIGKILL);
  ASSERT_TRUE(cluster.worker(1)->Wait(absl::Seconds(10)));
  {
    absl::StatusOr<JobInfo> now = client.GetJob(*job);
    ASSERT_TRUE(now.ok()) << now.status();
    ASSERT_EQ(now->state(), RUNNING) << "the job ended before the kill; make it longer";
  }

  // Deadline-bounded: the job ends, one way or the other, without hanging.
  const absl::Time until = absl::Now() + absl::Seconds(120);
  absl::StatusOr<JobInfo> info;
  while (absl::Now() < until) {
    info = client.GetJob(*job);
    if (info.ok() && (info->state() == SUCCEEDED || info->state() == FAILED ||
                      info->state() == CANCELLED)) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_TRUE(info->state() == SUCCEEDED || info->state() == FAILED)
      << ModeName(spec.mode()) << ": job still " << JobStateName(info->state())
      << " 120 s after a worker was killed";
  if (info->state() == FAILED) {
    EXPECT_FALSE(info->error().empty());
  } else {
    // The survivors trained to the end.
    int finished = 0;
    for (const WorkerProgress& w : info->workers()) {
      if (w.step() == w.total_steps()) ++finished;
    }
    EXPECT_GE(finished, 2) << ModeName(spec.mode());
  }
  cluster.Stop();
}

INSTANTIATE_TEST_SUITE_P(Modes, WorkerKillTest,
                         ::testing::Values(ModeCase{SYNC, 0}, ModeCase{SSP, 2},
                                           ModeCase{ASYNC, 0}),
                         [](const ::testing::TestParamInfo<ModeCase>& info) {
                           return ModeName(info.param.mode);
                         });

}  // namespace
}  // namespace tessera
