// The Scheduler's state changes and periodic work: starting pending jobs,
// ending jobs, giving up ranks, Tick and the calls to servers it queues.
// The RPC handlers are in scheduler.cc.

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "scheduler/scheduler.h"
#include "spdlog/spdlog.h"

namespace tessera::scheduler {
namespace {

// A DropJob that keeps failing on a live server is given up after this many tries.
constexpr int kMaxDropAttempts = 20;

}  // namespace

void Scheduler::AddCancel(WorkerSlot* slot, const std::string& job_id) {
  if (std::find(slot->cancelled.begin(), slot->cancelled.end(), job_id) == slot->cancelled.end()) {
    slot->cancelled.push_back(job_id);
  }
}

// ---- State changes ---------------------------------------------------------

void Scheduler::StartPendingJobs() {
  for (auto& [num, job] : jobs_) {
    JobRecord& r = job.record;
    if (r.state != PENDING) continue;
    std::vector<const Node*> workers, servers;
    std::map<std::string, int> jobs_per_server;
    for (const auto& [n, other] : jobs_) {
      if (other.record.state != RUNNING) continue;
      for (const ServerRecord& s : other.record.servers) jobs_per_server[s.name]++;
    }
    for (const Node& node : membership_.Nodes()) {
      if (!membership_.IsAlive(node)) continue;
      if (node.role == SERVER) {
        servers.push_back(membership_.FindByName(node.name));
      } else if (workers_[node.name].job_id.empty()) {
        workers.push_back(membership_.FindByName(node.name));
      }
    }
    if (static_cast<int>(workers.size()) < r.spec.num_workers() ||
        static_cast<int>(servers.size()) < r.spec.num_servers()) {
      return;  // first come, first served: later jobs wait too
    }
    // Nodes() is sorted by name, so ties go to the earlier name.
    std::stable_sort(servers.begin(), servers.end(), [&](const Node* a, const Node* b) {
      return jobs_per_server[a->name] < jobs_per_server[b->name];
    });
    JobRecord started = r;
    started.state = RUNNING;
    started.started_ms = NowMs();
    started.servers.clear();
    started.tasks.clear();
    for (int i = 0; i < r.spec.num_servers(); ++i) {
      started.servers.push_back({servers[i]->name, servers[i]->address});
    }
    for (int rank = 0; rank < r.spec.num_workers(); ++rank) {
      TaskRecord t;
      t.worker = workers[rank]->name;
      started.tasks.push_back(std::move(t));
    }
    if (absl::Status st = store_->Update(started); !st.ok()) {
      spdlog::error("cannot start {}: {}", r.id, std::string(st.message()));
      return;  // stays PENDING; the next Tick tries again
    }
    r = std::move(started);
    job.dirty = false;
    std::vector<std::string> worker_names, server_names;
    for (size_t rank = 0; rank < r.tasks.size(); ++rank) {
      WorkerSlot& slot = workers_[r.tasks[rank].worker];
      slot.job_id = r.id;
      slot.rank = static_cast<int>(rank);
      slot.delivered = false;
      worker_names.push_back(r.tasks[rank].worker);
    }
    for (const ServerRecord& s : r.servers) server_names.push_back(s.name);
    spdlog::info("started {}: workers [{}], servers [{}]", r.id, absl::StrJoin(worker_names, ", "),
                 absl::StrJoin(server_names, ", "));
  }
}

void Scheduler::EndJob(Job* job, JobState state, const std::string& error) {
  JobRecord& r = job->record;
  const bool was_running = r.state == RUNNING;
  r.state = state;
  r.error = error;
  r.finished_ms = NowMs();
  for (size_t rank = 0; rank < r.tasks.size(); ++rank) {
    auto slot = workers_.find(r.tasks[rank].worker);
    if (slot == workers_.end() || slot->second.job_id != r.id ||
        slot->second.rank != static_cast<int>(rank)) {
      continue;
    }
    if (state != SUCCEEDED && slot->second.delivered) AddCancel(&slot->second, r.id);
    slot->second.job_id.clear();
  }
  if (!was_running) return;
  for (const ServerRecord& s : r.servers) pending_drops_.emplace(DropKey{s.name, s.address, r.id}, 0);
  if (state == FAILED) spdlog::warn("{} failed: {}", r.id, error);
}

void Scheduler::GiveUpRank(Job* job, int rank, const std::string& why) {
  JobRecord& r = job->record;
  TaskRecord& task = r.tasks[rank];
  if (!IsRunning(task)) return;
  spdlog::warn("{}: giving up rank {} ({}): {}", r.id, rank, task.worker, why);
  task.state = TaskState::kDead;
  ++job->live_version;
  auto slot = workers_.find(task.worker);
  if (slot != workers_.end() && slot->second.job_id == r.id && slot->second.rank == rank) {
    if (slot->second.delivered) AddCancel(&slot->second, r.id);
    slot->second.job_id.clear();
  }
  MaybeComplete(job);
}

void Scheduler::MaybeComplete(Job* job) {
  JobRecord& r = job->record;
  if (r.state != RUNNING) return;
  int64_t correct = 0, examples = 0;
  double loss = 0, seconds = 0;
  int finished = 0;
  for (const TaskRecord& t : r.tasks) {
    if (IsRunning(t)) return;
    if (t.state != TaskState::kFinished) continue;
    ++finished;
    correct += t.test_correct;
    examples += t.test_examples;
    loss += t.test_loss_sum;
    seconds = std::max(seconds, t.train_seconds);
  }
  if (finished == 0) {
    EndJob(job, FAILED, absl::StrCat("all workers of ", r.id, " died"));
    return;
  }
  r.test_examples = examples;
  r.test_accuracy = examples > 0 ? static_cast<double>(correct) / examples : 0;
  r.test_loss = examples > 0 ? loss / examples : 0;
  r.train_seconds = seconds;
  spdlog::info("{} succeeded: test accuracy {:.4f}, loss {:.4f} on {} examples, {:.1f}s", r.id,
               r.test_accuracy, r.test_loss, examples, seconds);
  EndJob(job, SUCCEEDED, "");
}

void Scheduler::FailJobsOfServer(const std::string& name, const std::string& why) {
  for (auto& [num, job] : jobs_) {
    if (job.record.state != RUNNING) continue;
    for (const ServerRecord& s : job.record.servers) {
      if (s.name == name) {
        EndJob(&job, FAILED, why);
        (void)Persist(&job);  // Tick retries a failed write
        break;
      }
    }
  }
}

void Scheduler::Tick() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    const bool adopting = now < adopt_deadline_;
    for (const std::string& name : membership_.ExpireSilent()) {
      spdlog::warn("node {} missed its heartbeats for {}: dead", name,
                   absl::FormatDuration(options_.heartbeat_timeout));
    }
    // Gone: registered and dead, or (after a restart) not back in time.
    auto gone = [&](const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const Node* node = membership_.FindByName(name);
      if (node == nullptr) return !adopting;
      return !membership_.IsAlive(*node);
    };
    for (auto& [num, job] : jobs_) {
      JobRecord& r = job.record;
      if (r.state != RUNNING) continue;
      bool changed = false;
      for (const ServerRecord& s : r.servers) {
        const Node* node = membership_.FindByName(s.name);
        if (gone(s.name) || (node != nullptr && node->address != s.address)) {
          EndJob(&job, FAILED, absl::StrCat("server ", s.name, " (", s.address, ") died"));
          changed = true;
          break;
        }
      }
      for (size_t rank = 0; r.state == RUNNING && rank < r.tasks.size(); ++rank) {
        const TaskRecord& t = r.tasks[rank];
        if (!IsRunning(t)) continue;
        if (gone(t.worker)) {
          GiveUpRank(&job, static_cast<int>(rank), absl::StrCat("worker ", t.worker, " died"));
          changed = true;
        }
      }
      if (changed || job.dirty) {
        if (absl::Status st = Persist(&job); !st.ok()) {
          spdlog::error("cannot save {}: {}", r.id, std::string(st.message()));
        }
      }
    }
    for (auto& [num, job] : jobs_) {
      if (job.dirty && job.record.state != RUNNING) {
        if (absl::Status st = Persist(&job); !st.ok()) {
          spdlog::error("cannot save {}: {}", job.record.id, std::string(st.message()));
        }
      }
    }
    StartPendingJobs();
  }
  FlushServerCalls();
}

void Scheduler::FlushServerCalls() {
  if (!flush_mu_.TryLock()) return;
  struct LiveCall {
    std::string job_id;
    std::string address;
    int64_t version;
    SetLiveWorkersRequest request;
  };
  std::vector<LiveCall> lives;
  std::vector<DropKey> drops;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [num, job] : jobs_) {
      if (job.record.state != RUNNING) continue;
      for (const ServerRecord& s : job.record.servers) {
        auto acked = job.live_acked.find(s.address);
        const int64_t have = acked == job.live_acked.end() ? 0 : acked->second;
        if (have == job.live_version || !membership_.IsAlive(s.name)) continue;
        LiveCall call{job.record.id, s.address, job.live_version, {}};
        call.request.set_job_id(job.record.id);
        for (int rank : LiveRanks(job)) call.request.add_live_workers(rank);
        lives.push_back(std::move(call));
      }
    }
    for (auto it = pending_drops_.begin(); it != pending_drops_.end();) {
      if (membership_.IsAlive(std::get<0>(it->first))) {
        drops.push_back(it->first);
        ++it;
      } else {
        it = pending_drops_.erase(it);  // a dead server holds nothing to drop
      }
    }
  }
  std::vector<absl::Status> live_results, drop_results;
  for (const LiveCall& call : lives) {
    live_results.push_back(servers_->SetLiveWorkers(call.address, call.request));
  }
  for (const DropKey& key : drops) {
    DropJobRequest drop;
    drop.set_job_id(std::get<2>(key));
    drop_results.push_back(servers_->DropJob(std::get<1>(key), drop));
  }
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < lives.size(); ++i) {
      const absl::Status& st = live_results[i];
      // NOT_FOUND: no worker has created the job there yet; its CreateJob
      // will carry the current live set.
      if (st.ok() || absl::IsNotFound(st)) {
        absl::StatusOr<Job*> job = FindJob(lives[i].job_id);
        if (job.ok()) (*job)->live_acked[lives[i].address] = lives[i].version;
      } else {
        spdlog::warn("telling {} the live workers of {}: {} (will retry)", lives[i].address,
                     lives[i].job_id, std::string(st.message()));
      }
    }
    for (size_t i = 0; i < drops.size(); ++i) {
      const absl::Status& st = drop_results[i];
      auto it = pending_drops_.find(drops[i]);
      if (it == pending_drops_.end()) continue;
      if (st.ok() || absl::IsNotFound(st)) {
        pending_drops_.erase(it);
      } else if (++it->second >= kMaxDropAttempts) {
        spdlog::warn("giving up dropping {} on {}: {}", std::get<2>(drops[i]),
                     std::get<1>(drops[i]), std::string(st.message()));
        pending_drops_.erase(it);
      }
    }
  }
  flush_mu_.Unlock();
}

}  // namespace tessera::scheduler
