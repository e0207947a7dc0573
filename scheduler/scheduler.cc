#include "scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace tessera::scheduler {
namespace {

bool Terminal(JobState s) { return s == SUCCEEDED || s == FAILED || s == CANCELLED; }

// The first difference between a declared tensor and the planned one, or "".
std::string TensorDifference(const TensorSpec& planned, const TensorSpec& got) {
  if (planned.name() != got.name()) {
    return absl::StrCat("name '", got.name(), "' (planned '", planned.name(), "')");
  }
  if (planned.size() != got.size()) {
    return absl::StrCat("'", got.name(), "' size ", got.size(), " (planned ", planned.size(), ")");
  }
  if (planned.init() != got.init()) {
    return absl::StrCat("'", got.name(), "' init ", TensorSpec::Init_Name(got.init()),
                        " (planned ", TensorSpec::Init_Name(planned.init()), ")");
  }
  if (planned.scale() != got.scale()) {
    return absl::StrCat("'", got.name(), "' scale ", got.scale(), " (planned ", planned.scale(),
                        ")");
  }
  return "";
}

}  // namespace

absl::Status SchedulerOptions::Validate() const {
  if (heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat_interval must be > 0");
  }
  if (heartbeat_timeout < 2 * heartbeat_interval) {
    return absl::InvalidArgumentError(
        "heartbeat_timeout must be at least twice heartbeat_interval");
  }
  if (tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval must be > 0");
  }
  if (split_threshold == 0) return absl::InvalidArgumentError("split_threshold must be > 0");
  return absl::OkStatus();
}

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store, Clock* clock,
                     ServerControl* servers)
    : options_(options),
      store_(std::move(store)),
      clock_(clock),
      servers_(servers),
      adopt_deadline_(clock->Now() + 2 * options.heartbeat_timeout),
      membership_(clock, options.heartbeat_timeout) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options,
                                                             std::unique_ptr<JobStore> store,
                                                             Clock* clock,
                                                             ServerControl* servers) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Scheduler> s(new Scheduler(options, std::move(store), clock, servers));
  TESSERA_RETURN_IF_ERROR(s->Load());
  return s;
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Load() {
  TESSERA_ASSIGN_OR_RETURN(std::vector<JobRecord> records, store_->LoadAll());
  absl::MutexLock lock(&mu_);
  int running = 0;
  for (JobRecord& r : records) {
    TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(r.id));
    Job& job = jobs_[num];
    job.record = std::move(r);
    if (job.record.state != RUNNING) continue;
    ++running;
    // Until they re-register, the workers of a running job are not idle.
    for (size_t rank = 0; rank < job.record.tasks.size(); ++rank) {
      const TaskRecord& t = job.record.tasks[rank];
      if (!IsRunning(t)) continue;
      WorkerSlot& slot = workers_[t.worker];
      slot.job_id = job.record.id;
      slot.rank = static_cast<int>(rank);
      slot.delivered = false;
    }
  }
  spdlog::info("job database {}: {} jobs, {} running (waiting {} for their nodes)",
               store_->path(), jobs_.size(), running,
               absl::FormatDuration(2 * options_.heartbeat_timeout));
  return absl::OkStatus();
}

void Scheduler::Start() {
  ticker_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.tick_interval)) Tick();
  });
}

void Scheduler::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (ticker_.joinable()) ticker_.join();
}

absl::StatusOr<Scheduler::Job*> Scheduler::FindJob(const std::string& id) {
  TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(id));
  auto it = jobs_.find(num);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
  return &it->second;
}

absl::Status Scheduler::Persist(Job* job) {
  absl::Status st = store_->Update(job->record);
  job->dirty = !st.ok();
  return st;
}

std::vector<int> Scheduler::LiveRanks(const Job& job) const {
  std::vector<int> ranks;
  for (size_t i = 0; i < job.record.tasks.size(); ++i) {
    if (IsLive(job.record.tasks[i])) ranks.push_back(static_cast<int>(i));
  }
  return ranks;
}

// ---- Nodes -----------------------------------------------------------------

absl::StatusOr<RegisterNodeResponse> Scheduler::RegisterNode(const RegisterNodeRequest& request) {
  RegisterNodeResponse response;
  {
    absl::MutexLock lock(&mu_);
    const Node* old = membership_.FindByName(request.name());
    const bool replaces_server = old != nullptr && old->role == SERVER;
    const std::string old_address = old != nullptr ? old->address : "";
    TESSERA_ASSIGN_OR_RETURN(
        const Node node,
        membership_.Register(request.role(), request.name(), request.address()));
    spdlog::info("registered {} {} as {}{}", request.role() == SERVER ? "server" : "worker",
                 node.name, node.id, node.address.empty() ? "" : " at " + node.address);
    if (node.role == WORKER) {
      AdoptWorker(node.name, request.running_job_id(), request.running_rank());
    } else if (replaces_server && clock_->Now() >= adopt_deadline_) {
      // A server registers again when it starts, when we restarted (covered
      // by the grace period) or when we declared it dead (its jobs fail
      // anyway). Past the grace period it restarted or was cut off: the
      // shards it held are gone or stale.
      FailJobsOfServer(node.name, absl::StrCat("server ", node.name, " (", old_address,
                                               ") restarted and lost its shards"));
    }
    StartPendingJobs();
    response.set_node_id(node.id);
    response.set_heartbeat_interval_ms(
        static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  }
  FlushServerCalls();
  return response;
}

void Scheduler::AdoptWorker(const std::string& name, const std::string& running_job,
                            int running_rank) {
  WorkerSlot& slot = workers_[name];
  if (!running_job.empty()) {
    absl::StatusOr<Job*> found = FindJob(running_job);
    Job* job = found.ok() ? *found : nullptr;
    const bool ours = job != nullptr && job->record.state == RUNNING && running_rank >= 0 &&
                      running_rank < static_cast<int>(job->record.tasks.size()) &&
                      job->record.tasks[running_rank].worker == name &&
                      IsRunning(job->record.tasks[running_rank]);
    if (ours) {
      if (!slot.job_id.empty() && (slot.job_id != running_job || slot.rank != running_rank)) {
        // We had it down for another task, which it does not run.
        absl::StatusOr<Job*> other = FindJob(slot.job_id);
        if (other.ok() && (*other)->record.state == RUNNING) {
          GiveUpRank(*other, slot.rank, absl::StrCat("worker ", name, " no longer runs it"));
          (void)Persist(*other);  // Tick retries a failed write
        }
      }
      slot.job_id = running_job;
      slot.rank = running_rank;
      slot.delivered = true;
      spdlog::info("worker {} re-adopted as rank {} of {}", name, running_rank, running_job);
      return;
    }
    spdlog::info("worker {} runs {} rank {}, which is no longer its task: told to stop", name,
                 running_job, running_rank);
    AddCancel(&slot, running_job);
  }
  if (slot.job_id.empty()) return;
  absl::StatusOr<Job*> found = FindJob(slot.job_id);
  if (!found.ok() || (*found)->record.state != RUNNING) {
    slot.job_id.clear();
    return;
  }
  Job* job = *found;
  const TaskRecord& task = job->record.tasks[slot.rank];
  if (task.state == TaskState::kAssigned) {
    // It never started the task (the assignment was lost with the old
    // process, or with us): hand it out again.
    slot.delivered = false;
    return;
  }
  // It had started the task and came back without it: that rank is lost.
  GiveUpRank(job, slot.rank, absl::StrCat("worker ", name, " restarted"));
  (void)Persist(job);
}

absl::StatusOr<HeartbeatResponse> Scheduler::Heartbeat(const HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  TESSERA_ASSIGN_OR_RETURN(const Node node, membership_.Heartbeat(request.node_id()));
  HeartbeatResponse response;
  if (node.role != WORKER) return response;
  StartPendingJobs();
  WorkerSlot& slot = workers_[node.name];
  for (const std::string& job : slot.cancelled) response.add_cancelled_job_ids(job);
  // A worker drops queued assignments of the jobs it is told to stop, so an
  // assignment of such a job waits for the next heartbeat.
  const bool cancelling_it =
      std::find(slot.cancelled.begin(), slot.cancelled.end(), slot.job_id) != slot.cancelled.end();
  slot.cancelled.clear();
  if (!slot.job_id.empty() && !slot.delivered && !cancelling_it) {
    absl::StatusOr<Job*> job = FindJob(slot.job_id);
    if (job.ok() && (*job)->record.state == RUNNING) {
      WorkerAssignment* a = response.mutable_assignment();
      a->set_job_id(slot.job_id);
      *a->mutable_spec() = (*job)->record.spec;
      a->set_rank(slot.rank);
      a->set_num_workers(static_cast<int32_t>((*job)->record.tasks.size()));
      slot.delivered = true;
      spdlog::info("worker {} gets {} rank {}", node.name, slot.job_id, slot.rank);
    }
  }
  return response;
}

absl::StatusOr<ListNodesResponse> Scheduler::ListNodes(const ListNodesRequest&) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::map<std::string, std::vector<std::string>> jobs_of_server;
  for (const auto& [num, job] : jobs_) {
    if (job.record.state != RUNNING) continue;
    for (const ServerRecord& s : job.record.servers) jobs_of_server[s.name].push_back(job.record.id);
  }
  ListNodesResponse response;
  for (const Node& n : membership_.Nodes()) {
    NodeInfo* info = response.add_nodes();
    info->set_node_id(n.id);
    info->set_name(n.name);
    info->set_role(n.role);
    info->set_address(n.address);
    info->set_alive(membership_.IsAlive(n));
    info->set_last_heartbeat_ms_ago(absl::ToInt64Milliseconds(now - n.last_heartbeat));
    if (n.role == WORKER) {
      auto slot = workers_.find(n.name);
      if (slot != workers_.end() && !slot->second.job_id.empty()) {
        info->set_job_id(slot->second.job_id);
        info->set_rank(slot->second.rank);
      }
    } else {
      info->set_job_id(absl::StrJoin(jobs_of_server[n.name], ","));
    }
  }
  return response;
}

// ---- Jobs ------------------------------------------------------------------

absl::StatusOr<SubmitJobResponse> Scheduler::SubmitJob(const SubmitJobRequest& request) {
  JobSpec spec = request.spec();
  ApplyJobDefaults(&spec);
  TESSERA_RETURN_IF_ERROR(ValidateJobSpec(spec));
  absl::MutexLock lock(&mu_);
  Job job;
  job.record.spec = spec;
  job.record.state = PENDING;
  job.record.created_ms = NowMs();
  TESSERA_RETURN_IF_ERROR(store_->Insert(&job.record));
  const std::string id = job.record.id;
  TESSERA_ASSIGN_OR_RETURN(const int64_t num, JobNumber(id));
  spdlog::info("submitted {} ({}): {} workers, {} servers, {}", id, spec.name(),
               spec.num_workers(), spec.num_servers(), ModeName(spec.mode()));
  jobs_[num] = std::move(job);
  StartPendingJobs();
  SubmitJobResponse response;
  response.set_job_id(id);
  return response;
}

JobInfo Scheduler::ToInfo(const Job& job) const {
  const JobRecord& r = job.record;
  JobInfo info;
  info.set_job_id(r.id);
  info.set_name(r.spec.name());
  *info.mutable_spec() = r.spec;
  info.set_state(r.state);
  info.set_error(r.error);
  info.set_created_unix_ms(r.created_ms);
  info.set_started_unix_ms(r.started_ms);
  info.set_finished_unix_ms(r.finished_ms);
  for (const auto& [rank, p] : job.progress) {
    WorkerProgress* w = info.add_workers();
    *w = p;
    w->set_rank(rank);
    w->set_finished(rank < static_cast<int>(r.tasks.size()) &&
                    r.tasks[rank].state == TaskState::kFinished);
  }
  info.set_test_accuracy(static_cast<float>(r.test_accuracy));
  info.set_test_loss(static_cast<float>(r.test_loss));
  info.set_test_examples(r.test_examples);
  info.set_train_seconds(r.train_seconds);
  return info;
}

absl::StatusOr<JobInfo> Scheduler::GetJob(const GetJobRequest& request) {
  absl::MutexLock lock(&mu_);
  TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
  return ToInfo(*job);
}

absl::StatusOr<ListJobsResponse> Scheduler::ListJobs(const ListJobsRequest&) {
  absl::MutexLock lock(&mu_);
  ListJobsResponse response;
  for (const auto& [num, job] : jobs_) *response.add_jobs() = ToInfo(job);
  return response;
}

absl::StatusOr<CancelJobResponse> Scheduler::CancelJob(const CancelJobRequest& request) {
  CancelJobResponse response;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    if (Terminal(job->record.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat(job->record.id, " already ", JobStateName(job->record.state)));
    }
    spdlog::info("{} cancelled", job->record.id);
    EndJob(job, CANCELLED, "cancelled by the user");
    TESSERA_RETURN_IF_ERROR(Persist(job));
    StartPendingJobs();
    response.set_state(job->record.state);
  }
  FlushServerCalls();
  return response;
}

absl::StatusOr<RegisterTensorsResponse> Scheduler::RegisterTensors(
    const RegisterTensorsRequest& request) {
  std::vector<std::pair<ServerRecord, CreateJobRequest>> creates;
  RegisterTensorsResponse response;
  int64_t live_version = 0;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    JobRecord& r = job->record;
    if (r.state != RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat(r.id, " is ", JobStateName(r.state)));
    }
    const int rank = request.rank();
    if (rank < 0 || rank >= static_cast<int>(r.tasks.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", rank, " is not in 0..", r.tasks.size() - 1, " of ", r.id));
    }
    TaskRecord& task = r.tasks[rank];
    if (!IsRunning(task)) {
      return absl::FailedPreconditionError(
          absl::StrCat("rank ", rank, " of ", r.id, " is ", TaskStateName(task.state)));
    }
    bool changed = false;
    if (!r.has_plan) {
      std::vector<PlannedServer> servers;
      for (const ServerRecord& s : r.servers) servers.push_back({s.name, s.address});
      TESSERA_ASSIGN_OR_RETURN(
          r.plan, PlanTensors({request.tensors().begin(), request.tensors().end()}, servers,
                              options_.split_threshold));
      r.has_plan = true;
      changed = true;
      spdlog::info("{}: planned {} tensors over {} servers", r.id, r.plan.tensors_size(),
                   r.plan.servers_size());
    } else {
      if (request.tensors_size() != r.plan.tensors_size()) {
        return absl::FailedPreconditionError(
            absl::StrCat("rank ", rank, " declares ", request.tensors_size(), " tensors; ", r.id,
                         " was planned with ", r.plan.tensors_size()));
      }
      for (int i = 0; i < request.tensors_size(); ++i) {
        const std::string diff = TensorDifference(r.plan.tensors(i), request.tensors(i));
        if (!diff.empty()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "rank ", rank, " declares tensors[", i, "] ", diff, " unlike the plan of ", r.id));
        }
      }
    }
    if (task.state == TaskState::kAssigned) {
      task.state = TaskState::kStarted;
      changed = true;
    }
    if (changed || job->dirty) TESSERA_RETURN_IF_ERROR(Persist(job));
    const std::vector<int> live = LiveRanks(*job);
    for (int i = 0; i < r.plan.servers_size(); ++i) {
      const ServerSlices& s = r.plan.servers(i);
      CreateJobRequest create;
      create.set_job_id(r.id);
      *create.mutable_spec() = r.spec;
      *create.mutable_tensors() = r.plan.tensors();
      *create.mutable_slices() = s.slices();
      for (int k : live) create.add_live_workers(k);
      creates.emplace_back(ServerRecord{s.server_id(), s.address()}, std::move(create));
    }
    live_version = job->live_version;
    *response.mutable_plan() = r.plan;
    *response.mutable_plan()->mutable_compression() = r.spec.compression();
    *response.mutable_plan()->mutable_optimizer() = r.spec.optimizer();
  }
  for (const auto& [server, create] : creates) {
    TESSERA_RETURN_IF_ERROR_CTX(
        servers_->CreateJob(server.address, create),
        absl::StrCat("creating ", request.job_id(), " on server ", server.name, " (",
                     server.address, ")"));
  }
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Job*> job = FindJob(request.job_id());
    if (job.ok() && (*job)->live_version != live_version) {
      // A rank was given up while we talked to the servers: our CreateJob may
      // have restored the older live set, so send the current one again.
      for (const ServerRecord& s : (*job)->record.servers) (*job)->live_acked[s.address] = -1;
    }
  }
  FlushServerCalls();
  return response;
}

absl::StatusOr<ReportProgressResponse> Scheduler::ReportProgress(
    const ReportProgressRequest& request) {
  const WorkerProgress& p = request.progress();
  ReportProgressResponse response;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    const JobRecord& r = job->record;
    if (r.state == PENDING) {
      return absl::FailedPreconditionError(absl::StrCat(r.id, " has not started"));
    }
    if (p.rank() < 0 || p.rank() >= static_cast<int>(r.tasks.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", p.rank(), " is not in 0..", r.tasks.size() - 1, " of ", r.id));
    }
    if (p.step() < 0 || p.epoch() < 0) {
      return absl::InvalidArgumentError("progress step and epoch must be >= 0");
    }
    if (r.state != RUNNING || !IsLive(r.tasks[p.rank()])) {
      response.set_cancelled(true);
      return response;
    }
    job->progress[p.rank()] = p;
  }
  // The store serializes its own writes; no need to hold up other RPCs.
  TESSERA_RETURN_IF_ERROR(
      store_->AppendMetric(request.job_id(), p.rank(), p, request.wall_seconds()));
  return response;
}

absl::StatusOr<FinishTaskResponse> Scheduler::FinishTask(const FinishTaskRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    JobRecord& r = job->record;
    const int rank = request.rank();
    if (r.state == PENDING) {
      return absl::FailedPreconditionError(absl::StrCat(r.id, " has not started"));
    }
    if (rank < 0 || rank >= static_cast<int>(r.tasks.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", rank, " is not in 0..", r.tasks.size() - 1, " of ", r.id));
    }
    if (request.error().empty() &&
        (request.test_correct() < 0 || request.test_examples() < 0 ||
         request.test_correct() > request.test_examples() || request.train_seconds() < 0)) {
      // test_loss_sum is not checked: a diverged model may well report NaN.
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", rank, " of ", r.id, ": test_correct ", request.test_correct(),
          ", test_examples ", request.test_examples(), ", train_seconds ",
          request.train_seconds(), ": need 0 <= test_correct <= test_examples, train_seconds >= 0"));
    }
    TaskRecord& task = r.tasks[rank];
    // The worker is free whatever happens below.
    auto slot = workers_.find(task.worker);
    if (slot != workers_.end() && slot->second.job_id == r.id && slot->second.rank == rank) {
      slot->second.job_id.clear();
    }
    if (r.state != RUNNING || task.state == TaskState::kFinished) {
      // Decided already (cancelled, failed) or a retried finish.
    } else if (task.state == TaskState::kDead) {
      StartPendingJobs();
      return absl::FailedPreconditionError(absl::StrCat(
          "rank ", rank, " of ", r.id, " had been given up; its result does not count"));
    } else if (!request.error().empty()) {
      spdlog::warn("{} rank {} failed: {}", r.id, rank, request.error());
      EndJob(job, FAILED, absl::StrCat("worker rank ", rank, ": ", request.error()));
      TESSERA_RETURN_IF_ERROR(Persist(job));
    } else {
      task.state = TaskState::kFinished;
      task.test_correct = request.test_correct();
      task.test_examples = request.test_examples();
      task.test_loss_sum = request.test_loss_sum();
      task.train_seconds = request.train_seconds();
      spdlog::info("{} rank {} finished: {}/{} correct", r.id, rank, task.test_correct,
                   task.test_examples);
      MaybeComplete(job);
      TESSERA_RETURN_IF_ERROR(Persist(job));
    }
    StartPendingJobs();
  }
  FlushServerCalls();
  return FinishTaskResponse();
}

absl::StatusOr<GetJobMetricsResponse> Scheduler::GetJobMetrics(
    const GetJobMetricsRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    TESSERA_RETURN_IF_ERROR(FindJob(request.job_id()).status());
  }
  TESSERA_ASSIGN_OR_RETURN(std::vector<MetricPoint> points,
                           store_->Metrics(request.job_id(), request.after_step()));
  GetJobMetricsResponse response;
  for (MetricPoint& p : points) *response.add_points() = std::move(p);
  return response;
}

}  // namespace tessera::scheduler
