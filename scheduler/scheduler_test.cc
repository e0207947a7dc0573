#include "scheduler/scheduler.h"

#include <stdlib.h>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

class FakeServers : public ServerControl {
 public:
  absl::Status CreateJob(const std::string& address, const CreateJobRequest& r) override {
    absl::MutexLock lock(&mu);
    creates.emplace_back(address, r);
    return absl::OkStatus();
  }
  absl::Status SetLiveWorkers(const std::string& address, const SetLiveWorkersRequest& r) override {
    absl::MutexLock lock(&mu);
    live.emplace_back(address, r);
    return absl::OkStatus();
  }
  absl::Status DropJob(const std::string& address, const DropJobRequest& r) override {
    absl::MutexLock lock(&mu);
    drops.emplace_back(address, r);
    return absl::OkStatus();
  }
  absl::Mutex mu;
  std::vector<std::pair<std::string, CreateJobRequest>> creates;
  std::vector<std::pair<std::string, SetLiveWorkersRequest>> live;
  std::vector<std::pair<std::string, DropJobRequest>> drops;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tessera-sched-XXXXXX";
    db_ = std::string(mkdtemp(tmpl)) + "/jobs.db";
    Restart();
  }
  void Restart() {
    scheduler_.reset();
    auto store = JobStore::Open(db_);
    ASSERT_TRUE(store.ok()) << store.status();
    options_.heartbeat_timeout = absl::Seconds(5);
    scheduler_ = std::make_unique<Scheduler>(options_, std::move(*store), &clock_, &servers_);
    ASSERT_TRUE(scheduler_->Init().ok());
  }
  std::string Register(NodeRole role, const std::string& name, const std::string& job = "",
                       int rank = 0) {
    RegisterNodeRequest r;
    r.set_role(role);
    r.set_name(name);
    if (role == SERVER) r.set_address(name + ":1");
    r.set_running_job_id(job);
    r.set_running_rank(rank);
    auto resp = scheduler_->RegisterNode(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->node_id() : "";
  }
  HeartbeatResponse Beat(const std::string& node) {
    HeartbeatRequest r;
    r.set_node_id(node);
    auto resp = scheduler_->Heartbeat(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : HeartbeatResponse();
  }
  std::string Submit(int workers, int servers) {
    SubmitJobRequest r;
    JobSpec* s = r.mutable_spec();
    s->mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
    s->mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    s->mutable_optimizer()->set_learning_rate(0.1f);
    s->set_num_workers(workers);
    s->set_num_servers(servers);
    auto resp = scheduler_->SubmitJob(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->job_id() : "";
  }
  JobInfo Get(const std::string& id) {
    GetJobRequest r;
    r.set_job_id(id);
    return *scheduler_->GetJob(r);
  }
  absl::StatusOr<RegisterTensorsResponse> Tensors(const std::string& job, int rank) {
    RegisterTensorsRequest r;
    r.set_job_id(job);
    r.set_rank(rank);
    TensorSpec* t = r.add_tensors();
    t->set_name("dense0/w");
    t->set_size(100000);
    t = r.add_tensors();
    t->set_name("dense0/b");
    t->set_size(10);
    return scheduler_->RegisterTensors(r);
  }
  void Finish(const std::string& job, int rank, int correct, int examples, const std::string& error = "") {
    FinishTaskRequest r;
    r.set_job_id(job);
    r.set_rank(rank);
    r.set_error(error);
    r.set_test_correct(correct);
    r.set_test_examples(examples);
    ASSERT_TRUE(scheduler_->FinishTask(r).ok());
  }

  std::string db_;
  SchedulerOptions options_;
  FakeClock clock_;
  FakeServers servers_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, WholeLifecycle) {
  Register(SERVER, "s0");
  Register(SERVER, "s1");
  const std::string w0 = Register(WORKER, "w0");
  const std::string job = Submit(2, 2);
  EXPECT_EQ(Get(job).state(), PENDING);  // only one worker so far
  const std::string w1 = Register(WORKER, "w1");
  EXPECT_EQ(Get(job).state(), RUNNING);
  HeartbeatResponse h0 = Beat(w0), h1 = Beat(w1);
  ASSERT_TRUE(h0.has_assignment());
  ASSERT_TRUE(h1.has_assignment());
  EXPECT_EQ(h0.assignment().rank() + h1.assignment().rank(), 1);
  EXPECT_EQ(h0.assignment().num_workers(), 2);
  EXPECT_FALSE(Beat(w0).has_assignment());  // delivered once

  auto plan = Tensors(job, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->plan().servers_size(), 2);
  EXPECT_EQ(servers_.creates.size(), 2u);
  EXPECT_EQ(servers_.creates[0].second.live_workers_size(), 2);
  ASSERT_TRUE(Tensors(job, 1).ok());
  EXPECT_EQ(Tensors(job, 1)->plan().SerializeAsString(), plan->plan().SerializeAsString());

  ReportProgressRequest progress;
  progress.set_job_id(job);
  progress.mutable_progress()->set_rank(0);
  progress.mutable_progress()->set_step(20);
  progress.mutable_progress()->set_loss(0.5f);
  EXPECT_FALSE(scheduler_->ReportProgress(progress)->cancelled());
  EXPECT_EQ(Get(job).workers_size(), 1);

  Finish(job, 0, 80, 100);
  EXPECT_EQ(Get(job).state(), RUNNING);
  Finish(job, 1, 90, 100);
  JobInfo info = Get(job);
  EXPECT_EQ(info.state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(info.test_accuracy(), 0.85f);
  EXPECT_EQ(info.test_examples(), 200);
  EXPECT_EQ(servers_.drops.size(), 2u);
  GetJobMetricsRequest m;
  m.set_job_id(job);
  EXPECT_EQ(scheduler_->GetJobMetrics(m)->points_size(), 1);
  // Workers are free for the next job.
  const std::string next = Submit(2, 1);
  EXPECT_EQ(Get(next).state(), RUNNING);
}

TEST_F(SchedulerTest, BadRequestsGetClearErrors) {
  SubmitJobRequest bad;
  auto st = scheduler_->SubmitJob(bad);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("model.type"), absl::string_view::npos);
  GetJobRequest get;
  get.set_job_id("job-42");
  EXPECT_EQ(scheduler_->GetJob(get).status().code(), absl::StatusCode::kNotFound);
  HeartbeatRequest hb;
  hb.set_node_id("node-77");
  EXPECT_EQ(scheduler_->Heartbeat(hb).status().code(), absl::StatusCode::kNotFound);
  RegisterNodeRequest reg;
  reg.set_role(SERVER);
  reg.set_name("s");
  EXPECT_EQ(scheduler_->RegisterNode(reg).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensors("job-42", 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, CancelAndTerminalCancel) {
  const std::string job = Submit(1, 1);
  CancelJobRequest c;
  c.set_job_id(job);
  EXPECT_EQ(scheduler_->CancelJob(c)->state(), CANCELLED);
  auto again = scheduler_->CancelJob(c);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("already cancelled"), absl::string_view::npos);
}

TEST_F(SchedulerTest, DeadWorkerShrinksTheJobAndAllDeadFailsIt) {
  Register(SERVER, "s0");
  const std::string w0 = Register(WORKER, "w0");
  const std::string w1 = Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  ASSERT_TRUE(Tensors(job, 0).ok());
  // s0 and w0 keep beating; w1 goes silent.
  const std::string s0 = scheduler_->ListNodes({})->nodes(0).node_id();
  for (int i = 0; i < 7; ++i) {
    clock_.Advance(absl::Seconds(1));
    Beat(w0);
    Beat(s0);
    scheduler_->Tick();
  }
  EXPECT_EQ(Get(job).state(), RUNNING);
  ASSERT_EQ(servers_.live.size(), 1u);
  EXPECT_EQ(servers_.live[0].second.live_workers_size(), 1);
  // The survivor finishing completes the job.
  Finish(job, 0, 9, 10);  // w0 sorts first: rank 0
  EXPECT_EQ(Get(job).state(), SUCCEEDED);

  const std::string job2 = Submit(1, 1);
  EXPECT_EQ(Get(job2).state(), RUNNING);
  clock_.Advance(absl::Seconds(10));
  Beat(s0);
  scheduler_->Tick();
  EXPECT_EQ(Get(job2).state(), FAILED);
  EXPECT_NE(Get(job2).error().find("all workers"), std::string::npos) << Get(job2).error();
}

TEST_F(SchedulerTest, RestartKeepsJobsAndReadoptsWorkers) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  const std::string done = Get(job).job_id();
  ASSERT_TRUE(Tensors(job, 0).ok());
  Restart();
  ListJobsRequest list;
  ASSERT_EQ(scheduler_->ListJobs(list)->jobs_size(), 1);
  EXPECT_EQ(Get(job).state(), RUNNING);
  // The nodes come back; the worker says it still runs rank 0.
  const std::string s0 = Register(SERVER, "s0");
  const std::string w0 = Register(WORKER, "w0", job, 0);
  for (int i = 0; i < 12; ++i) {
    clock_.Advance(absl::Seconds(1));
    Beat(s0);
    Beat(w0);
    scheduler_->Tick();
  }
  EXPECT_EQ(Get(job).state(), RUNNING);
  ASSERT_TRUE(Tensors(job, 0).ok());
  Finish(job, 0, 5, 10);
  EXPECT_EQ(Get(job).state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(Get(job).test_accuracy(), 0.5f);
}

TEST_F(SchedulerTest, DeadServerFailsItsJob) {
  const std::string s0 = Register(SERVER, "s0");
  const std::string w0 = Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  int cancels = 0;
  for (int i = 0; i < 7; ++i) {
    clock_.Advance(absl::Seconds(1));
    cancels += Beat(w0).cancelled_job_ids_size();
    scheduler_->Tick();
  }
  cancels += Beat(w0).cancelled_job_ids_size();
  EXPECT_EQ(Get(job).state(), FAILED);
  EXPECT_NE(Get(job).error().find("server s0"), std::string::npos) << Get(job).error();
  EXPECT_EQ(cancels, 1);  // the worker is told to stop, once
}

}  // namespace
}  // namespace tessera::scheduler
