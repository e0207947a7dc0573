#include "scheduler/scheduler.h"

#include <map>
#include <set>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Records every call; fails the ones to addresses in `down`.
class FakeServers : public ServerControl {
 public:
  absl::Status CreateJob(const std::string& address, const CreateJobRequest& r) override {
    absl::MutexLock lock(&mu);
    if (down.count(address)) return absl::UnavailableError("connection refused");
    creates.emplace_back(address, r);
    return absl::OkStatus();
  }
  absl::Status SetLiveWorkers(const std::string& address, const SetLiveWorkersRequest& r) override {
    absl::MutexLock lock(&mu);
    if (down.count(address)) return absl::UnavailableError("connection refused");
    live.emplace_back(address, r);
    return absl::OkStatus();
  }
  absl::Status DropJob(const std::string& address, const DropJobRequest& r) override {
    absl::MutexLock lock(&mu);
    if (down.count(address)) return absl::UnavailableError("connection refused");
    drops.emplace_back(address, r.job_id());
    return absl::OkStatus();
  }
  // The live ranks each server was last told for `job`, by SetLiveWorkers.
  std::map<std::string, std::vector<int>> LastLive(const std::string& job) {
    absl::MutexLock lock(&mu);
    std::map<std::string, std::vector<int>> out;
    for (const auto& [address, r] : live) {
      if (r.job_id() == job) out[address] = {r.live_workers().begin(), r.live_workers().end()};
    }
    return out;
  }

  absl::Mutex mu;
  std::set<std::string> down;
  std::vector<std::pair<std::string, CreateJobRequest>> creates;
  std::vector<std::pair<std::string, SetLiveWorkersRequest>> live;
  std::vector<std::pair<std::string, std::string>> drops;  // (address, job)
};

using LiveEntry = std::pair<const std::string, std::vector<int>>;
LiveEntry LiveAt(const std::string& address, std::vector<int> ranks) {
  return LiveEntry(address, std::move(ranks));
}
std::pair<std::string, std::string> Drop(const std::string& address, const std::string& job) {
  return {address, job};
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.path() + "/jobs.db";
    Restart();
  }
  // A new Scheduler over the same database, as after kill -9 and a restart.
  void Restart() {
    scheduler_.reset();
    auto store = JobStore::Open(db_);
    ASSERT_TRUE(store.ok()) << store.status();
    auto s = Scheduler::Create(SchedulerOptions(), std::move(*store), &clock_, &servers_);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
    // ids_ is kept: the nodes' old ids are stale now.
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
    if (!resp.ok()) return "";
    EXPECT_EQ(resp->heartbeat_interval_ms(), 500);
    ids_[name] = resp->node_id();
    return resp->node_id();
  }
  absl::StatusOr<HeartbeatResponse> TryBeat(const std::string& name) {
    HeartbeatRequest r;
    r.set_node_id(ids_[name]);
    return scheduler_->Heartbeat(r);
  }
  HeartbeatResponse Beat(const std::string& name) {
    auto resp = TryBeat(name);
    EXPECT_TRUE(resp.ok()) << name << ": " << resp.status();
    return resp.ok() ? *resp : HeartbeatResponse();
  }
  // Advances the clock `seconds` times by a second; `alive` nodes heartbeat
  // each time; Tick runs each time.
  void Pass(int seconds, const std::vector<std::string>& alive) {
    for (int i = 0; i < seconds; ++i) {
      clock_.Advance(absl::Seconds(1));
      for (const std::string& n : alive) Beat(n);
      scheduler_->Tick();
    }
  }
  absl::StatusOr<SubmitJobResponse> TrySubmit(int workers, int servers) {
    SubmitJobRequest r;
    JobSpec* s = r.mutable_spec();
    s->set_name("fmnist");
    s->mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
    s->mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    s->mutable_optimizer()->set_learning_rate(0.1f);
    s->set_num_workers(workers);
    s->set_num_servers(servers);
    return scheduler_->SubmitJob(r);
  }
  std::string Submit(int workers, int servers) {
    auto resp = TrySubmit(workers, servers);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->job_id() : "";
  }
  JobInfo Get(const std::string& id) {
    GetJobRequest r;
    r.set_job_id(id);
    auto info = scheduler_->GetJob(r);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : JobInfo();
  }
  static std::vector<TensorSpec> Model() {
    std::vector<TensorSpec> t(2);
    t[0].set_name("dense0/w");
    t[0].set_size(7840);
    t[0].set_init(TensorSpec::UNIFORM);
    t[0].set_scale(0.1f);
    t[1].set_name("dense0/b");
    t[1].set_size(10);
    return t;
  }
  absl::StatusOr<RegisterTensorsResponse> Tensors(const std::string& job, int rank,
                                                  std::vector<TensorSpec> tensors = Model()) {
    RegisterTensorsRequest r;
    r.set_job_id(job);
    r.set_rank(rank);
    for (TensorSpec& t : tensors) *r.add_tensors() = std::move(t);
    return scheduler_->RegisterTensors(r);
  }
  absl::StatusOr<ReportProgressResponse> Progress(const std::string& job, int rank, int64_t step,
                                                  float loss) {
    ReportProgressRequest r;
    r.set_job_id(job);
    r.mutable_progress()->set_rank(rank);
    r.mutable_progress()->set_step(step);
    r.mutable_progress()->set_loss(loss);
    r.mutable_progress()->set_accuracy(0.5f);
    r.set_wall_seconds(step / 10.0);
    return scheduler_->ReportProgress(r);
  }
  absl::Status Finish(const std::string& job, int rank, int correct, int examples,
                      double seconds = 1, const std::string& error = "") {
    FinishTaskRequest r;
    r.set_job_id(job);
    r.set_rank(rank);
    r.set_error(error);
    r.set_test_correct(correct);
    r.set_test_examples(examples);
    r.set_test_loss_sum(examples * 0.5);
    r.set_train_seconds(seconds);
    return scheduler_->FinishTask(r).status();
  }
  absl::StatusOr<CancelJobResponse> Cancel(const std::string& job) {
    CancelJobRequest r;
    r.set_job_id(job);
    return scheduler_->CancelJob(r);
  }
  // The rank `worker` got in its assignment, or -1.
  int RankOf(const HeartbeatResponse& h) {
    return h.has_assignment() ? h.assignment().rank() : -1;
  }

  ScopedTempDir dir_ = ScopedTempDir::Create("tessera-sched").value();
  std::string db_;
  FakeClock clock_;
  FakeServers servers_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, std::string> ids_;  // node name -> node id
};

TEST_F(SchedulerTest, WholeLifecycle) {
  Register(SERVER, "s0");
  Register(SERVER, "s1");
  Register(WORKER, "w0");
  const std::string job = Submit(2, 2);
  EXPECT_EQ(job, "job-1");
  EXPECT_EQ(Get(job).state(), PENDING);  // one worker so far
  EXPECT_FALSE(Beat("w0").has_assignment());
  Register(WORKER, "w1");
  EXPECT_EQ(Get(job).state(), RUNNING);
  EXPECT_GT(Get(job).started_unix_ms(), 0);

  // Each worker gets its assignment in its next heartbeat, exactly once.
  const HeartbeatResponse h0 = Beat("w0"), h1 = Beat("w1");
  ASSERT_TRUE(h0.has_assignment());
  ASSERT_TRUE(h1.has_assignment());
  EXPECT_EQ(h0.assignment().job_id(), job);
  EXPECT_EQ(RankOf(h0), 0);  // ranks in name order
  EXPECT_EQ(RankOf(h1), 1);
  EXPECT_EQ(h0.assignment().num_workers(), 2);
  EXPECT_EQ(h0.assignment().spec().batch_size(), 64);  // defaults applied
  EXPECT_FALSE(Beat("w0").has_assignment());
  EXPECT_FALSE(Beat("w1").has_assignment());

  // Workers register tensors; each call makes sure both servers hold the job.
  auto plan = Tensors(job, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->plan().servers_size(), 2);
  ASSERT_EQ(servers_.creates.size(), 2u);
  for (const auto& [address, create] : servers_.creates) {
    const ServerSlices* mine = nullptr;
    for (const ServerSlices& s : plan->plan().servers()) {
      if (s.address() == address) mine = &s;
    }
    ASSERT_NE(mine, nullptr) << address;
    EXPECT_EQ(create.job_id(), job);
    EXPECT_EQ(create.spec().num_workers(), 2);
    EXPECT_EQ(create.tensors_size(), 2);
    EXPECT_EQ(create.slices().size(), mine->slices().size());
    for (int i = 0; i < create.slices_size(); ++i) {
      EXPECT_EQ(create.slices(i).SerializeAsString(), mine->slices(i).SerializeAsString());
    }
    EXPECT_THAT(create.live_workers(), ElementsAre(0, 1));
  }
  // Small tensors go whole, one per server (the least loaded gets the next).
  EXPECT_EQ(plan->plan().servers(0).slices(0).tensor(), "dense0/w");
  EXPECT_EQ(plan->plan().servers(1).slices(0).tensor(), "dense0/b");
  auto again = Tensors(job, 1);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->plan().SerializeAsString(), plan->plan().SerializeAsString());
  EXPECT_EQ(servers_.creates.size(), 4u);

  ASSERT_TRUE(Progress(job, 0, 20, 1.0f).ok());
  ASSERT_TRUE(Progress(job, 1, 20, 3.0f).ok());
  auto p = Progress(job, 0, 40, 0.5f);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->cancelled());
  const JobInfo running = Get(job);
  ASSERT_EQ(running.workers_size(), 2);
  EXPECT_EQ(running.workers(0).step(), 40);
  GetJobMetricsRequest m;
  m.set_job_id(job);
  auto metrics = scheduler_->GetJobMetrics(m);
  ASSERT_TRUE(metrics.ok());
  ASSERT_EQ(metrics->points_size(), 2);
  EXPECT_EQ(metrics->points(0).step(), 20);
  EXPECT_FLOAT_EQ(metrics->points(0).loss(), 2.0f);
  m.set_after_step(20);
  EXPECT_EQ(scheduler_->GetJobMetrics(m)->points_size(), 1);

  ASSERT_TRUE(Finish(job, 0, 80, 100, 12.0).ok());
  EXPECT_EQ(Get(job).state(), RUNNING);
  ASSERT_TRUE(Finish(job, 0, 80, 100, 12.0).ok());  // a retried finish counts once
  ASSERT_TRUE(Finish(job, 1, 91, 100, 10.0).ok());
  const JobInfo info = Get(job);
  EXPECT_EQ(info.state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(info.test_accuracy(), 171.0f / 200.0f);
  EXPECT_FLOAT_EQ(info.test_loss(), 0.5f);
  EXPECT_EQ(info.test_examples(), 200);
  EXPECT_DOUBLE_EQ(info.train_seconds(), 12.0);
  EXPECT_GT(info.finished_unix_ms(), 0);
  EXPECT_TRUE(info.workers(0).finished());
  scheduler_->Tick();
  EXPECT_THAT(servers_.drops, UnorderedElementsAre(Drop("s0:1", job),
                                                   Drop("s1:1", job)));
  EXPECT_TRUE(servers_.live.empty());
  EXPECT_EQ(Beat("w0").cancelled_job_ids_size(), 0);  // it finished; nothing to stop

  // The workers are idle again: the next job starts on them.
  const std::string next = Submit(2, 1);
  EXPECT_EQ(Get(next).state(), RUNNING);
  EXPECT_EQ(RankOf(Beat("w1")), 1);
}

TEST_F(SchedulerTest, PendingJobsStartInSubmissionOrderOnTheLeastBusyServers) {
  Register(SERVER, "s0");
  Register(SERVER, "s1");
  Register(WORKER, "w0");
  const std::string big = Submit(2, 1);
  const std::string small = Submit(1, 1);
  EXPECT_EQ(Get(big).state(), PENDING);
  EXPECT_EQ(Get(small).state(), PENDING);  // behind the big one
  Register(WORKER, "w1");
  Register(WORKER, "w2");
  EXPECT_EQ(Get(big).state(), RUNNING);
  EXPECT_EQ(Get(small).state(), RUNNING);
  // big took s0; small goes to s1, which hosts nothing.
  ASSERT_TRUE(Tensors(big, 0).ok());
  ASSERT_TRUE(Tensors(small, 0).ok());
  ASSERT_EQ(servers_.creates.size(), 2u);
  EXPECT_EQ(servers_.creates[0].first, "s0:1");
  EXPECT_EQ(servers_.creates[1].first, "s1:1");
  auto nodes = scheduler_->ListNodes(ListNodesRequest());
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->nodes_size(), 5);
  EXPECT_EQ(nodes->nodes(0).name(), "s0");
  EXPECT_EQ(nodes->nodes(0).job_id(), big);
  EXPECT_EQ(nodes->nodes(4).name(), "w2");
  EXPECT_EQ(nodes->nodes(4).job_id(), small);
  EXPECT_TRUE(nodes->nodes(4).alive());
}

TEST_F(SchedulerTest, BadRequestsGetClearErrors) {
  SubmitJobRequest bad;
  auto st = scheduler_->SubmitJob(bad);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("model.type"));
  auto too_many = TrySubmit(5000, 1);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("num_workers"));
  EXPECT_TRUE(scheduler_->ListJobs(ListJobsRequest())->jobs().empty());

  for (const std::string id : {"job-42", "job-0", "garbage", ""}) {
    GetJobRequest get;
    get.set_job_id(id);
    auto got = scheduler_->GetJob(get);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("'" + id + "'"));
  }
  EXPECT_EQ(Cancel("job-42").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Tensors("job-42", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Progress("job-42", 0, 1, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Finish("job-42", 0, 1, 1).code(), absl::StatusCode::kNotFound);
  GetJobMetricsRequest m;
  m.set_job_id("job-42");
  EXPECT_EQ(scheduler_->GetJobMetrics(m).status().code(), absl::StatusCode::kNotFound);

  HeartbeatRequest hb;
  hb.set_node_id("node-77");
  EXPECT_EQ(scheduler_->Heartbeat(hb).status().code(), absl::StatusCode::kNotFound);
  RegisterNodeRequest reg;
  reg.set_role(SERVER);
  reg.set_name("s");
  EXPECT_EQ(scheduler_->RegisterNode(reg).status().code(), absl::StatusCode::kInvalidArgument);

  // Garbage ranks and counts on a running job.
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  ASSERT_EQ(Get(job).state(), RUNNING);
  EXPECT_EQ(Tensors(job, 7).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensors(job, -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Progress(job, 3, 1, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Finish(job, 9, 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Finish(job, 0, 5, 1).code(), absl::StatusCode::kInvalidArgument);  // correct > total
  std::vector<TensorSpec> dup = Model();
  dup[1].set_name(dup[0].name());
  EXPECT_EQ(Tensors(job, 0, dup).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(job).state(), RUNNING);
}

TEST_F(SchedulerTest, CancelPendingAndRunningJobs) {
  const std::string pending = Submit(1, 1);
  auto c = Cancel(pending);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state(), CANCELLED);
  auto again = Cancel(pending);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.status().message(), "job-1 already cancelled");

  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string running = Submit(1, 1);
  ASSERT_EQ(Get(running).state(), RUNNING);
  ASSERT_EQ(RankOf(Beat("w0")), 0);
  ASSERT_TRUE(Tensors(running, 0).ok());
  ASSERT_TRUE(Cancel(running).ok());
  EXPECT_EQ(Get(running).state(), CANCELLED);
  EXPECT_TRUE(Progress(running, 0, 20, 1)->cancelled());
  EXPECT_THAT(Beat("w0").cancelled_job_ids(), ElementsAre(running));
  EXPECT_TRUE(Beat("w0").cancelled_job_ids().empty());  // told once
  EXPECT_THAT(servers_.drops, ElementsAre(Drop("s0:1", running)));
  // The stopped worker reports back; that is fine and changes nothing.
  EXPECT_TRUE(Finish(running, 0, 0, 0, 0, "cancelled").ok());
  EXPECT_EQ(Get(running).state(), CANCELLED);

  const std::string done = Submit(1, 1);
  ASSERT_TRUE(Finish(done, 0, 1, 2).ok());
  EXPECT_EQ(Cancel(done).status().message(), absl::StrCat(done, " already succeeded"));
}

TEST_F(SchedulerTest, DifferentTensorsFromAnotherRankAreRefused) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  ASSERT_TRUE(Tensors(job, 0).ok());
  std::vector<TensorSpec> other = Model();
  other[1].set_size(11);
  auto st = Tensors(job, 1, other);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("'dense0/b' size 11 (planned 10)"));
  other = Model();
  other.pop_back();
  EXPECT_EQ(Tensors(job, 1, other).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerTest, UnreachableServerFailsRegisterTensorsNamingIt) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  servers_.down.insert("s0:1");
  auto st = Tensors(job, 0);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("s0 (s0:1)"));
  servers_.down.clear();
  EXPECT_TRUE(Tensors(job, 0).ok());  // the worker retries
}

TEST_F(SchedulerTest, WorkerErrorFailsTheJobAndStopsTheOthers) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  ASSERT_EQ(RankOf(Beat("w0")), 0);
  ASSERT_EQ(RankOf(Beat("w1")), 1);
  ASSERT_TRUE(Finish(job, 1, 0, 0, 0, "out of memory").ok());
  const JobInfo info = Get(job);
  EXPECT_EQ(info.state(), FAILED);
  EXPECT_EQ(info.error(), "worker rank 1: out of memory");
  EXPECT_THAT(Beat("w0").cancelled_job_ids(), ElementsAre(job));
  EXPECT_TRUE(Beat("w1").cancelled_job_ids().empty());  // it knows
  EXPECT_THAT(servers_.drops, ElementsAre(Drop("s0:1", job)));
}

TEST_F(SchedulerTest, DeadWorkerShrinksTheLiveSetThenAllDeadFailsTheJob) {
  Register(SERVER, "s0");
  Register(SERVER, "s1");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 2);
  ASSERT_EQ(RankOf(Beat("w0")), 0);
  ASSERT_EQ(RankOf(Beat("w1")), 1);
  ASSERT_TRUE(Tensors(job, 0).ok());
  // w1 goes silent; 5 s is still alive, 6 s is dead.
  Pass(5, {"s0", "s1", "w0"});
  EXPECT_TRUE(servers_.live.empty());
  Pass(1, {"s0", "s1", "w0"});
  EXPECT_EQ(Get(job).state(), RUNNING);
  const auto live = servers_.LastLive(job);
  EXPECT_THAT(live, UnorderedElementsAre(LiveAt("s0:1", {0}),
                                         LiveAt("s1:1", {0})));
  // Its late heartbeat is refused; registering again it learns to stop.
  EXPECT_EQ(TryBeat("w1").status().code(), absl::StatusCode::kNotFound);
  Register(WORKER, "w1", job, 1);
  EXPECT_THAT(Beat("w1").cancelled_job_ids(), ElementsAre(job));
  EXPECT_EQ(Tensors(job, 1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Progress(job, 1, 20, 1)->cancelled());
  EXPECT_FALSE(Progress(job, 0, 20, 1)->cancelled());
  // A new CreateJob carries the shrunk live set too.
  ASSERT_TRUE(Tensors(job, 0).ok());
  EXPECT_THAT(servers_.creates.back().second.live_workers(), ElementsAre(0));
  // Then w0 dies too: nobody is left.
  Pass(6, {"s0", "s1", "w1"});
  const JobInfo info = Get(job);
  EXPECT_EQ(info.state(), FAILED);
  EXPECT_EQ(info.error(), "all workers of job-1 died");
  EXPECT_EQ(servers_.drops.size(), 2u);
  // w1 is idle and alive: a new job can use it.
  const std::string next = Submit(1, 1);
  EXPECT_EQ(Get(next).state(), RUNNING);
}

TEST_F(SchedulerTest, SurvivorsFinishingAfterADeathSucceedOnTheirResults) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  Pass(6, {"s0", "w0"});
  ASSERT_TRUE(Finish(job, 0, 9, 10).ok());
  const JobInfo info = Get(job);
  EXPECT_EQ(info.state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(info.test_accuracy(), 0.9f);
  // The dead rank's own finish does not count.
  EXPECT_EQ(Finish(job, 1, 0, 10).code(), absl::StatusCode::kOk);  // job already decided
  EXPECT_FLOAT_EQ(Get(job).test_accuracy(), 0.9f);
}

TEST_F(SchedulerTest, FailedLiveSetUpdatesAreRetried) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  servers_.down.insert("s0:1");
  Pass(6, {"s0", "w0"});
  EXPECT_TRUE(servers_.live.empty());
  servers_.down.clear();
  Pass(1, {"s0", "w0"});
  EXPECT_THAT(servers_.LastLive(job), ElementsAre(LiveAt("s0:1", {0})));
  const size_t sent = servers_.live.size();
  Pass(2, {"s0", "w0"});
  EXPECT_EQ(servers_.live.size(), sent);  // acknowledged: not sent again
}

TEST_F(SchedulerTest, DeadServerFailsItsJob) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  ASSERT_EQ(RankOf(Beat("w0")), 0);
  int cancels = 0;
  for (int i = 0; i < 7; ++i) {
    clock_.Advance(absl::Seconds(1));
    cancels += Beat("w0").cancelled_job_ids_size();
    scheduler_->Tick();
  }
  cancels += Beat("w0").cancelled_job_ids_size();
  EXPECT_EQ(Get(job).state(), FAILED);
  EXPECT_EQ(Get(job).error(), "server s0 (s0:1) died");
  EXPECT_EQ(cancels, 1);  // the worker is told to stop, once
  EXPECT_TRUE(servers_.drops.empty());  // nothing to drop on a dead server
}

TEST_F(SchedulerTest, RestartedServerFailsItsJob) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  Pass(11, {"s0", "w0"});  // past the start-up grace period
  Register(SERVER, "s0");  // the process came back with empty shards
  EXPECT_EQ(Get(job).state(), FAILED);
  EXPECT_THAT(Get(job).error(), HasSubstr("server s0 (s0:1) restarted"));
}

TEST_F(SchedulerTest, RestartKeepsJobsAndReadoptsWorkers) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  Register(WORKER, "w2");
  const std::string done = Submit(1, 1);
  ASSERT_TRUE(Finish(done, 0, 3, 4).ok());
  const std::string job = Submit(3, 1);
  ASSERT_EQ(RankOf(Beat("w0")), 0);
  ASSERT_EQ(RankOf(Beat("w1")), 1);
  ASSERT_EQ(RankOf(Beat("w2")), 2);
  auto plan = Tensors(job, 0);
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(Tensors(job, 1).ok());
  ASSERT_TRUE(Progress(job, 0, 20, 2.0f).ok());
  ASSERT_TRUE(Finish(job, 2, 7, 10, 5.0).ok());  // rank 2 is done before the crash
  const std::string pending = Submit(4, 1);

  Restart();  // kill -9 and start again over the same file
  auto list = scheduler_->ListJobs(ListJobsRequest());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->jobs_size(), 3);
  EXPECT_EQ(list->jobs(0).state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(list->jobs(0).test_accuracy(), 0.75f);
  EXPECT_EQ(list->jobs(1).state(), RUNNING);
  EXPECT_EQ(list->jobs(2).state(), PENDING);
  EXPECT_EQ(list->jobs(2).job_id(), pending);
  GetJobMetricsRequest m;
  m.set_job_id(job);
  EXPECT_EQ(scheduler_->GetJobMetrics(m)->points_size(), 1);

  // Nodes come back: w0 still runs rank 0; w1 does not come back.
  Register(SERVER, "s0");
  Register(WORKER, "w0", job, 0);
  EXPECT_FALSE(Beat("w0").has_assignment());  // it runs it already
  Pass(9, {"s0", "w0"});
  EXPECT_EQ(Get(job).state(), RUNNING);
  EXPECT_TRUE(servers_.live.empty());  // still within the grace period
  Pass(2, {"s0", "w0"});
  EXPECT_EQ(Get(job).state(), RUNNING);
  EXPECT_THAT(servers_.LastLive(job), ElementsAre(LiveAt("s0:1", {0, 2})));
  // The same plan as before the crash.
  auto replan = Tensors(job, 0);
  ASSERT_TRUE(replan.ok());
  EXPECT_EQ(replan->plan().SerializeAsString(), plan->plan().SerializeAsString());
  ASSERT_TRUE(Finish(job, 0, 5, 10, 4.0).ok());
  const JobInfo info = Get(job);
  EXPECT_EQ(info.state(), SUCCEEDED);
  EXPECT_FLOAT_EQ(info.test_accuracy(), 0.6f);  // ranks 0 and 2
  EXPECT_DOUBLE_EQ(info.train_seconds(), 5.0);
}

TEST_F(SchedulerTest, AssignmentLostInACrashIsSentAgain) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  const std::string job = Submit(1, 1);
  ASSERT_EQ(Get(job).state(), RUNNING);
  Restart();  // before w0's next heartbeat
  EXPECT_EQ(TryBeat("w0").status().code(), absl::StatusCode::kNotFound);
  Register(SERVER, "s0");
  Register(WORKER, "w0");  // it never got a task
  EXPECT_EQ(RankOf(Beat("w0")), 0);
  Pass(12, {"s0", "w0"});
  EXPECT_EQ(Get(job).state(), RUNNING);
}

TEST_F(SchedulerTest, WorkerRestartedMidTaskLosesItsRank) {
  Register(SERVER, "s0");
  Register(WORKER, "w0");
  Register(WORKER, "w1");
  const std::string job = Submit(2, 1);
  ASSERT_EQ(RankOf(Beat("w1")), 1);
  ASSERT_TRUE(Tensors(job, 1).ok());
  Register(WORKER, "w1");  // a new process under the same name, without the task
  scheduler_->Tick();
  EXPECT_FALSE(Beat("w1").has_assignment());
  EXPECT_THAT(servers_.LastLive(job), ElementsAre(LiveAt("s0:1", {0})));
  EXPECT_EQ(Get(job).state(), RUNNING);
  // And it is free for other work.
  const std::string next = Submit(1, 1);
  EXPECT_EQ(Get(next).state(), RUNNING);
  EXPECT_EQ(Beat("w1").assignment().job_id(), next);
}

}  // namespace
}  // namespace tessera::scheduler
