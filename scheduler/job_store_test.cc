#include "scheduler/job_store.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/file_util.h"
#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

// A database path in a folder of its own, which goes with it.
struct TempDb {
  ScopedTempDir dir = ScopedTempDir::Create("tessera-jobstore").value();
  std::string path = dir.path() + "/jobs.db";
};

JobRecord RunningJob() {
  JobRecord r;
  r.spec.set_name("mnist");
  r.spec.set_num_workers(2);
  r.created_ms = 5;
  r.state = RUNNING;
  r.started_ms = 7;
  r.servers = {{"s0", "127.0.0.1:5"}, {"s1", "127.0.0.1:6"}};
  TaskRecord t0;
  t0.worker = "w0";
  t0.state = TaskState::kFinished;
  t0.test_correct = 8;
  t0.test_examples = 10;
  t0.test_loss_sum = 2.5;
  t0.train_seconds = 3;
  TaskRecord t1;
  t1.worker = "w1";
  t1.state = TaskState::kDead;
  r.tasks = {t0, t1};
  r.has_plan = true;
  r.plan.add_tensors()->set_name("dense0/w");
  r.plan.add_servers()->set_address("127.0.0.1:5");
  return r;
}

TEST(JobStoreTest, JobsTasksPlansAndMetricsSurviveReopening) {
  const TempDb temp;
  const std::string& path = temp.path;
  std::string id;
  {
    auto store = JobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    JobRecord pending;
    pending.spec.set_name("first");
    ASSERT_TRUE((*store)->Insert(&pending).ok());
    EXPECT_EQ(pending.id, "job-1");
    JobRecord r = RunningJob();
    ASSERT_TRUE((*store)->Insert(&r).ok());
    EXPECT_EQ(r.id, "job-2");
    id = r.id;
    r.test_accuracy = 0.8;
    r.error = "none";
    ASSERT_TRUE((*store)->Update(r).ok());
    WorkerProgress p;
    for (int rank : {0, 1}) {
      p.set_step(10);
      p.set_epoch(rank);
      p.set_loss(rank == 0 ? 1.0f : 3.0f);
      ASSERT_TRUE((*store)->AppendMetric(id, rank, p, 1.5).ok());
    }
    p.set_step(20);
    p.set_loss(9.0f);
    ASSERT_TRUE((*store)->AppendMetric(id, 0, p, 2.5).ok());
    p.set_loss(4.0f);  // the same (rank, step) again replaces the first report
    ASSERT_TRUE((*store)->AppendMetric(id, 0, p, 2.5).ok());
  }
  auto store = JobStore::Open(path);
  ASSERT_TRUE(store.ok());
  auto jobs = (*store)->LoadAll();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].state, PENDING);
  EXPECT_TRUE((*jobs)[0].tasks.empty());
  EXPECT_FALSE((*jobs)[0].has_plan);
  const JobRecord& r = (*jobs)[1];
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(r.spec.name(), "mnist");
  EXPECT_EQ(r.state, RUNNING);
  EXPECT_EQ(r.error, "none");
  EXPECT_EQ(r.created_ms, 5);
  EXPECT_EQ(r.started_ms, 7);
  ASSERT_EQ(r.servers.size(), 2u);
  EXPECT_EQ(r.servers[1].name, "s1");
  EXPECT_EQ(r.servers[1].address, "127.0.0.1:6");
  ASSERT_EQ(r.tasks.size(), 2u);
  EXPECT_EQ(r.tasks[0].worker, "w0");
  EXPECT_EQ(r.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(r.tasks[0].test_correct, 8);
  EXPECT_EQ(r.tasks[0].test_examples, 10);
  EXPECT_DOUBLE_EQ(r.tasks[0].test_loss_sum, 2.5);
  EXPECT_EQ(r.tasks[1].state, TaskState::kDead);
  ASSERT_TRUE(r.has_plan);
  EXPECT_EQ(r.plan.tensors(0).name(), "dense0/w");
  EXPECT_DOUBLE_EQ(r.test_accuracy, 0.8);
  auto points = (*store)->Metrics(id, 0);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 2u);
  EXPECT_EQ((*points)[0].step(), 10);
  EXPECT_FLOAT_EQ((*points)[0].loss(), 2.0f);  // averaged over ranks
  EXPECT_EQ((*points)[0].epoch(), 1);
  EXPECT_EQ((*points)[1].step(), 20);
  EXPECT_FLOAT_EQ((*points)[1].loss(), 4.0f);
  EXPECT_EQ((*store)->Metrics(id, 10)->size(), 1u);
  EXPECT_TRUE((*store)->Metrics("job-1", 0)->empty());
  // Fewer tasks than before: the extra rows go.
  JobRecord shrunk = r;
  shrunk.tasks.resize(1);
  ASSERT_TRUE((*store)->Update(shrunk).ok());
  EXPECT_EQ((*(*store)->LoadAll())[1].tasks.size(), 1u);
  JobRecord ghost;
  ghost.id = "job-99";
  EXPECT_EQ((*store)->Update(ghost).code(), absl::StatusCode::kNotFound);
  ghost.id = "garbage";
  EXPECT_EQ((*store)->Update(ghost).code(), absl::StatusCode::kNotFound);
}

TEST(JobStoreTest, UnopenableDatabaseNamesThePath) {
  auto store = JobStore::Open("/nonexistent-dir/x/jobs.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/x/jobs.db"), absl::string_view::npos)
      << store.status();
}

TEST(JobStoreTest, CorruptDatabaseIsAClearError) {
  const TempDb temp;
  const std::string& path = temp.path;
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  for (int i = 0; i < 100; ++i) fputs("this is not a database, just text. ", f);
  fclose(f);
  auto store = JobStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos) << store.status();
}

TEST(JobStoreTest, ReadOnlyDatabaseFailsWritesWithTheSqliteMessage) {
  if (geteuid() == 0) GTEST_SKIP() << "root can write read-only files";
  const TempDb temp;
  const std::string& path = temp.path;
  { ASSERT_TRUE(JobStore::Open(path).ok()); }
  const std::string dir = path.substr(0, path.rfind('/'));
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
  auto store = JobStore::Open(path);
  absl::Status st = store.ok() ? [&] {
    JobRecord r;
    return (*store)->Insert(&r);
  }()
                               : store.status();
  chmod(dir.c_str(), 0755);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path), absl::string_view::npos) << st;
}

TEST(JobStoreTest, ForeignSchemaIsRefused) {
  const TempDb temp;
  const std::string& path = temp.path;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE jobs(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = JobStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos);
  // Our own file opens again and again.
  const TempDb our_db;
  const std::string& ours = our_db.path;
  EXPECT_TRUE(JobStore::Open(ours).ok());
  EXPECT_TRUE(JobStore::Open(ours).ok());
}

}  // namespace
}  // namespace tessera::scheduler
