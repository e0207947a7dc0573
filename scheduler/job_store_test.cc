#include "scheduler/job_store.h"

#include <stdlib.h>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

std::string TempDb() {
  char tmpl[] = "/tmp/tessera-jobstore-XXXXXX";
  return std::string(mkdtemp(tmpl)) + "/jobs.db";
}

TEST(JobStoreTest, JobsAndMetricsSurviveReopening) {
  const std::string path = TempDb();
  std::string id;
  {
    auto store = JobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    JobRecord r;
    r.spec.set_name("a");
    r.created_ms = 5;
    ASSERT_TRUE((*store)->Insert(&r).ok());
    EXPECT_EQ(r.id, "job-1");
    id = r.id;
    r.state = RUNNING;
    r.worker_names = {"w0", "w1"};
    r.server_names = {"s0"};
    r.server_addresses = {"127.0.0.1:5"};
    r.has_plan = true;
    r.plan.add_tensors()->set_name("dense0/w");
    r.test_accuracy = 0.5;
    ASSERT_TRUE((*store)->Update(r).ok());
    WorkerProgress p;
    for (int rank : {0, 1}) {
      p.set_step(10);
      p.set_loss(rank == 0 ? 1.0f : 3.0f);
      ASSERT_TRUE((*store)->AppendMetric(id, rank, p, 1.5).ok());
    }
    p.set_step(20);
    ASSERT_TRUE((*store)->AppendMetric(id, 0, p, 2.5).ok());
  }
  auto store = JobStore::Open(path);
  ASSERT_TRUE(store.ok());
  auto jobs = (*store)->LoadAll();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  const JobRecord& r = (*jobs)[0];
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(r.spec.name(), "a");
  EXPECT_EQ(r.state, RUNNING);
  EXPECT_EQ(r.worker_names, (std::vector<std::string>{"w0", "w1"}));
  EXPECT_EQ(r.server_addresses, (std::vector<std::string>{"127.0.0.1:5"}));
  EXPECT_TRUE(r.has_plan);
  EXPECT_EQ(r.plan.tensors(0).name(), "dense0/w");
  EXPECT_DOUBLE_EQ(r.test_accuracy, 0.5);
  auto points = (*store)->Metrics(id, 0);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 2u);
  EXPECT_FLOAT_EQ((*points)[0].loss(), 2.0f);  // averaged over ranks
  EXPECT_EQ((*points)[1].step(), 20);
  EXPECT_EQ((*store)->Metrics(id, 10)->size(), 1u);
  JobRecord ghost;
  ghost.id = "job-99";
  EXPECT_EQ((*store)->Update(ghost).code(), absl::StatusCode::kNotFound);
}

TEST(JobStoreTest, UnopenableOrCorruptDatabaseIsAClearError) {
  auto store = JobStore::Open("/nonexistent-dir/x/jobs.db");
  EXPECT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/x/jobs.db"), absl::string_view::npos);
  const std::string path = TempDb();
  FILE* f = fopen(path.c_str(), "w");
  fputs("this is not a database, just text that is long enough to look like a header....", f);
  fclose(f);
  store = JobStore::Open(path);
  EXPECT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos) << store.status();
}

}  // namespace
}  // namespace tessera::scheduler
