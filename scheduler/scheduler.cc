#include "scheduler/scheduler.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "scheduler/planner.h"
#include "spdlog/spdlog.h"

namespace tessera::scheduler {
namespace {

bool Terminal(JobState s) { return s == SUCCEEDED || s == FAILED || s == CANCELLED; }

int64_t JobNumber(const std::string& id) {
  int64_t n = -1;
  if (id.rfind("job-", 0) != 0 || !absl::SimpleAtoi(id.substr(4), &n)) return -1;
  return n;
}

}  // namespace

absl::Status SchedulerOptions::Validate() const {
  if (heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("heartbeat interval must be > 0");
  }
  if (heartbeat_timeout < 2 * heartbeat_interval) {
    return absl::InvalidArgumentError("heartbeat timeout must be at least twice the interval");
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store, Clock* clock,
                     ServerControl* servers)
    : options_(options), store_(std::move(store)), clock_(clock), servers_(servers) {}

absl::Status Scheduler::Init() {
  TESSERA_ASSIGN_OR_RETURN(std::vector<JobRecord> records, store_->LoadAll());
  absl::MutexLock lock(&mu_);
  const absl::Time grace = clock_->Now() + 2 * options_.heartbeat_timeout;
  for (JobRecord& r : records) {
    Job job;
    job.adopt_until = grace;
    if (r.state == RUNNING) {
      for (int i = 0; i < static_cast<int>(r.worker_names.size()); ++i) job.live_ranks.insert(i);
    }
    job.record = std::move(r);
    jobs_[JobNumber(job.record.id)] = std::move(job);
  }
  spdlog::info("loaded {} jobs from the database", jobs_.size());
  return absl::OkStatus();
}

bool Scheduler::Alive(const Node& n) const {
  return clock_->Now() - n.last_seen <= options_.heartbeat_timeout;
}

Scheduler::Node* Scheduler::NodeByName(const std::string& name) {
  for (auto& [id, node] : nodes_) {
    if (node.name == name) return &node;
  }
  return nullptr;
}

absl::StatusOr<Scheduler::Job*> Scheduler::FindJob(const std::string& id) {
  auto it = jobs_.find(JobNumber(id));
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", id, "'"));
  return &it->second;
}

absl::Status Scheduler::Persist(const Job& job) {
  absl::Status st = store_->Update(job.record);
  if (!st.ok()) spdlog::error("cannot save {}: {}", job.record.id, std::string(st.message()));
  return st;
}

void Scheduler::Run(std::vector<ServerCall>& calls) {
  for (ServerCall& c : calls) c();
  calls.clear();
}

absl::StatusOr<RegisterNodeResponse> Scheduler::RegisterNode(const RegisterNodeRequest& request) {
  if (request.role() != SERVER && request.role() != WORKER) {
    return absl::InvalidArgumentError("role must be SERVER or WORKER");
  }
  if (request.name().empty()) return absl::InvalidArgumentError("a node needs a name");
  if (request.role() == SERVER && request.address().empty()) {
    return absl::InvalidArgumentError("a server must give the address it listens on");
  }
  std::vector<ServerCall> calls;
  RegisterNodeResponse response;
  {
    absl::MutexLock lock(&mu_);
    Node node;
    // The same name again (a restarted process, or us restarted): the new
    // entry replaces the old; a worker keeps only the task it says it runs.
    if (Node* old = NodeByName(request.name())) nodes_.erase(old->id);
    node.id = absl::StrCat("node-", next_node_++);
    node.name = request.name();
    node.role = request.role();
    node.address = request.address();
    node.last_seen = clock_->Now();
    // A worker that comes back with a task it still runs is re-adopted.
    if (request.role() == WORKER && !request.running_job_id().empty()) {
      auto job = FindJob(request.running_job_id());
      if (job.ok() && (*job)->record.state == RUNNING &&
          (*job)->live_ranks.count(request.running_rank()) > 0) {
        node.job_id = request.running_job_id();
        node.rank = request.running_rank();
        spdlog::info("{} re-adopted as rank {} of {}", node.name, node.rank, node.job_id);
      } else {
        node.cancelled.push_back(request.running_job_id());
      }
    }
    spdlog::info("registered {} {} as {}{}", request.role() == SERVER ? "server" : "worker",
                 node.name, node.id, node.address.empty() ? "" : " at " + node.address);
    response.set_node_id(node.id);
    response.set_heartbeat_interval_ms(
        static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
    nodes_[node.id] = std::move(node);
    StartPendingJobs();
  }
  Run(calls);
  return response;
}

absl::StatusOr<HeartbeatResponse> Scheduler::Heartbeat(const HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(request.node_id());
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown node '", request.node_id(),
                                            "' (the scheduler restarted?); register again"));
  }
  Node& node = it->second;
  node.last_seen = clock_->Now();
  HeartbeatResponse response;
  if (node.has_assignment) {
    *response.mutable_assignment() = node.assignment;
    node.has_assignment = false;
  }
  for (const std::string& j : node.cancelled) response.add_cancelled_job_ids(j);
  node.cancelled.clear();
  return response;
}

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
  TESSERA_RETURN_IF_ERROR(store_->Update(job.record));
  const std::string id = job.record.id;
  spdlog::info("submitted {} ({}): {} workers, {} servers", id, spec.name(), spec.num_workers(),
               spec.num_servers());
  jobs_[JobNumber(id)] = std::move(job);
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
    w->set_finished(job.finished.count(rank) > 0);
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
  std::vector<ServerCall> calls;
  CancelJobResponse response;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    if (Terminal(job->record.state)) {
      return absl::FailedPreconditionError(absl::StrCat(
          request.job_id(), " already ", JobStateName(job->record.state)));
    }
    EndJob(job, CANCELLED, "cancelled by the user", &calls);
    response.set_state(job->record.state);
  }
  Run(calls);
  return response;
}

absl::StatusOr<ListNodesResponse> Scheduler::ListNodes(const ListNodesRequest&) {
  absl::MutexLock lock(&mu_);
  ListNodesResponse response;
  for (const auto& [id, n] : nodes_) {
    NodeInfo* info = response.add_nodes();
    info->set_node_id(n.id);
    info->set_name(n.name);
    info->set_role(n.role);
    info->set_address(n.address);
    info->set_alive(Alive(n));
    info->set_last_heartbeat_ms_ago(absl::ToInt64Milliseconds(clock_->Now() - n.last_seen));
    info->set_job_id(n.job_id);
    info->set_rank(n.rank);
  }
  return response;
}

absl::StatusOr<RegisterTensorsResponse> Scheduler::RegisterTensors(
    const RegisterTensorsRequest& request) {
  std::vector<std::pair<std::string, CreateJobRequest>> creates;
  RegisterTensorsResponse response;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    JobRecord& r = job->record;
    if (r.state != RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat(r.id, " is ", JobStateName(r.state)));
    }
    if (request.rank() < 0 || request.rank() >= static_cast<int>(r.worker_names.size())) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", request.rank(), " is not in ", r.id));
    }
    if (request.tensors_size() == 0) return absl::InvalidArgumentError("no tensors declared");
    if (!r.has_plan) {
      std::vector<PlannedServer> servers;
      for (size_t i = 0; i < r.server_names.size(); ++i) {
        servers.push_back({r.server_names[i], r.server_addresses[i]});
      }
      r.plan = PlanTensors({request.tensors().begin(), request.tensors().end()}, servers,
                           options_.split_threshold);
      r.has_plan = true;
      TESSERA_RETURN_IF_ERROR(Persist(*job));
    } else {
      if (request.tensors_size() != r.plan.tensors_size()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "rank ", request.rank(), " declares ", request.tensors_size(), " tensors; ", r.id,
            " has ", r.plan.tensors_size()));
      }
      for (int i = 0; i < request.tensors_size(); ++i) {
        if (request.tensors(i).SerializeAsString() != r.plan.tensors(i).SerializeAsString()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "rank ", request.rank(), " declares tensor ", i, " '", request.tensors(i).name(),
              "' differently from the job's plan ('", r.plan.tensors(i).name(), "')"));
        }
      }
    }
    for (const ServerSlices& s : r.plan.servers()) {
      CreateJobRequest create;
      create.set_job_id(r.id);
      *create.mutable_spec() = r.spec;
      *create.mutable_tensors() = r.plan.tensors();
      *create.mutable_slices() = s.slices();
      for (int rank : job->live_ranks) create.add_live_workers(rank);
      creates.emplace_back(s.address(), std::move(create));
    }
    *response.mutable_plan() = r.plan;
  }
  // Idempotent on the servers: every worker's call makes sure they hold the job.
  for (const auto& [address, create] : creates) {
    TESSERA_RETURN_IF_ERROR(servers_->CreateJob(address, create));
  }
  return response;
}

absl::StatusOr<ReportProgressResponse> Scheduler::ReportProgress(
    const ReportProgressRequest& request) {
  absl::MutexLock lock(&mu_);
  TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
  ReportProgressResponse response;
  if (job->record.state != RUNNING) {
    response.set_cancelled(true);
    return response;
  }
  const WorkerProgress& p = request.progress();
  job->progress[p.rank()] = p;
  TESSERA_RETURN_IF_ERROR(store_->AppendMetric(job->record.id, p.rank(), p, request.wall_seconds()));
  return response;
}

absl::StatusOr<FinishTaskResponse> Scheduler::FinishTask(const FinishTaskRequest& request) {
  std::vector<ServerCall> calls;
  {
    absl::MutexLock lock(&mu_);
    TESSERA_ASSIGN_OR_RETURN(Job * job, FindJob(request.job_id()));
    if (job->record.state != RUNNING) return FinishTaskResponse();  // already decided
    if (!request.error().empty()) {
      spdlog::warn("{} rank {} failed: {}", job->record.id, request.rank(), request.error());
      EndJob(job, FAILED, absl::StrCat("worker rank ", request.rank(), ": ", request.error()), &calls);
    } else {
      job->finished[request.rank()] = request;
      for (auto& [id, node] : nodes_) {
        if (node.job_id == job->record.id && node.rank == request.rank()) node.job_id.clear();
      }
      MaybeComplete(job, &calls);
    }
    StartPendingJobs();
  }
  Run(calls);
  return FinishTaskResponse();
}

absl::StatusOr<GetJobMetricsResponse> Scheduler::GetJobMetrics(const GetJobMetricsRequest& request) {
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

void Scheduler::MaybeComplete(Job* job, std::vector<ServerCall>* calls) {
  for (int rank : job->live_ranks) {
    if (job->finished.count(rank) == 0) return;
  }
  if (job->finished.empty()) return;
  int64_t correct = 0, examples = 0;
  double loss = 0, seconds = 0;
  for (const auto& [rank, f] : job->finished) {
    correct += f.test_correct();
    examples += f.test_examples();
    loss += f.test_loss_sum();
    seconds = std::max(seconds, f.train_seconds());
  }
  JobRecord& r = job->record;
  r.test_examples = examples;
  r.test_accuracy = examples ? static_cast<double>(correct) / examples : 0;
  r.test_loss = examples ? loss / examples : 0;
  r.train_seconds = seconds;
  spdlog::info("{} succeeded: test accuracy {:.4f} on {} examples", r.id, r.test_accuracy, examples);
  EndJob(job, SUCCEEDED, "", calls);
}

void Scheduler::EndJob(Job* job, JobState state, const std::string& error,
                       std::vector<ServerCall>* calls) {
  JobRecord& r = job->record;
  const bool was_running = r.state == RUNNING;
  r.state = state;
  r.error = error;
  r.finished_ms = NowMs();
  (void)Persist(*job);
  for (auto& [id, node] : nodes_) {
    if (node.job_id != r.id) continue;
    node.job_id.clear();
    node.has_assignment = false;
    if (state != SUCCEEDED) node.cancelled.push_back(r.id);
  }
  if (!was_running) return;
  DropJobRequest drop;
  drop.set_job_id(r.id);
  for (const std::string& address : r.server_addresses) {
    calls->push_back([this, address, drop] {
      absl::Status st = servers_->DropJob(address, drop);
      if (!st.ok()) spdlog::warn("drop {} on {}: {}", drop.job_id(), address, std::string(st.message()));
    });
  }
}

void Scheduler::LoseWorker(Job* job, int rank, std::vector<ServerCall>* calls) {
  if (job->live_ranks.erase(rank) == 0) return;
  const JobRecord& r = job->record;
  if (job->finished.count(rank) > 0) return;  // its part is done
  spdlog::warn("{} lost worker rank {} ({})", r.id, rank,
               rank < static_cast<int>(r.worker_names.size()) ? r.worker_names[rank] : "?");
  if (job->live_ranks.empty()) {
    EndJob(job, FAILED, absl::StrCat("all workers of ", r.id, " died"), calls);
    return;
  }
  SetLiveWorkersRequest live;
  live.set_job_id(r.id);
  for (int k : job->live_ranks) live.add_live_workers(k);
  for (const std::string& address : r.server_addresses) {
    calls->push_back([this, address, live] {
      absl::Status st = servers_->SetLiveWorkers(address, live);
      if (!st.ok()) spdlog::warn("tell {} about {}'s live workers: {}", address, live.job_id(), std::string(st.message()));
    });
  }
  MaybeComplete(job, calls);
}

void Scheduler::Tick() {
  std::vector<ServerCall> calls;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    for (auto& [num, job] : jobs_) {
      JobRecord& r = job.record;
      if (r.state != RUNNING || now < job.adopt_until) continue;
      // A server of the job that is gone fails it: its shard has no replica yet.
      for (size_t i = 0; i < r.server_names.size() && r.state == RUNNING; ++i) {
        Node* s = NodeByName(r.server_names[i]);
        if (s == nullptr || !Alive(*s) || s->address != r.server_addresses[i]) {
          EndJob(&job, FAILED,
                 absl::StrCat("server ", r.server_names[i], " (", r.server_addresses[i], ") died"),
                 &calls);
        }
      }
      if (r.state != RUNNING) continue;
      const std::set<int> ranks = job.live_ranks;
      for (int rank : ranks) {
        Node* w = NodeByName(r.worker_names[rank]);
        if (w == nullptr || !Alive(*w) || (w->job_id != r.id && job.finished.count(rank) == 0)) {
          LoseWorker(&job, rank, &calls);
        }
        if (r.state != RUNNING) break;
      }
    }
    StartPendingJobs();
  }
  Run(calls);
}

void Scheduler::StartPendingJobs() {
  for (auto& [num, job] : jobs_) {
    JobRecord& r = job.record;
    if (r.state != PENDING) continue;
    std::vector<Node*> workers, servers;
    std::map<std::string, int> server_jobs;
    for (auto& [n2, other] : jobs_) {
      if (other.record.state != RUNNING) continue;
      for (const std::string& s : other.record.server_names) server_jobs[s]++;
    }
    for (auto& [id, node] : nodes_) {
      if (!Alive(node)) continue;
      if (node.role == WORKER && node.job_id.empty()) workers.push_back(&node);
      if (node.role == SERVER) servers.push_back(&node);
    }
    if (static_cast<int>(workers.size()) < r.spec.num_workers() ||
        static_cast<int>(servers.size()) < r.spec.num_servers()) {
      continue;
    }
    auto by_name = [](const Node* a, const Node* b) { return a->name < b->name; };
    std::sort(workers.begin(), workers.end(), by_name);
    std::stable_sort(servers.begin(), servers.end(), [&](const Node* a, const Node* b) {
      return server_jobs[a->name] != server_jobs[b->name] ? server_jobs[a->name] < server_jobs[b->name]
                                                          : a->name < b->name;
    });
    r.worker_names.clear();
    r.server_names.clear();
    r.server_addresses.clear();
    for (int i = 0; i < r.spec.num_servers(); ++i) {
      r.server_names.push_back(servers[i]->name);
      r.server_addresses.push_back(servers[i]->address);
    }
    job.live_ranks.clear();
    for (int rank = 0; rank < r.spec.num_workers(); ++rank) {
      Node* w = workers[rank];
      r.worker_names.push_back(w->name);
      w->job_id = r.id;
      w->rank = rank;
      w->has_assignment = true;
      w->assignment.set_job_id(r.id);
      *w->assignment.mutable_spec() = r.spec;
      w->assignment.set_rank(rank);
      w->assignment.set_num_workers(r.spec.num_workers());
      job.live_ranks.insert(rank);
    }
    r.state = RUNNING;
    r.started_ms = NowMs();
    job.adopt_until = absl::InfinitePast();
    (void)Persist(job);
    spdlog::info("started {}: workers [{}], servers [{}]", r.id, absl::StrJoin(r.worker_names, ", "),
                 absl::StrJoin(r.server_names, ", "));
  }
}

}  // namespace tessera::scheduler
