#ifndef TESSERA_SCHEDULER_SCHEDULER_H_
#define TESSERA_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proto/scheduler_service.pb.h"
#include "scheduler/job_store.h"
#include "scheduler/membership.h"
#include "scheduler/planner.h"
#include "scheduler/server_control.h"

namespace tessera::scheduler {

struct SchedulerOptions {
  // A node silent this long is dead.
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  // Heartbeat period told to nodes when they register.
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  // Period of Tick() once Start()ed.
  absl::Duration tick_interval = absl::Milliseconds(250);
  // Tensors of at least this many elements are split over all of a job's servers.
  uint64_t split_threshold = kDefaultSplitThreshold;

  // INVALID_ARGUMENT naming the field when a value is out of range.
  absl::Status Validate() const;
};

// The cluster's brain: membership, jobs, tensor plans, failure handling.
//
// Methods mirror the SchedulerService RPCs and take/return its messages; the
// gRPC adapter is scheduler/rpc/scheduler_service.h. Every job change an RPC
// makes is in the JobStore before the method returns OK (a failed write is
// returned as an error and retried by Tick). Calls to servers (ServerControl)
// are made without holding the lock.
//
// Jobs start in submission order (a pending job that does not fit yet holds
// back later ones) once `num_workers` idle live workers and `num_servers` live
// servers are registered. Servers hosting the fewest running jobs are picked
// first (a server may host several jobs); idle workers in name order get ranks
// 0..W-1, one task per worker.
//
// Heartbeats: a worker's next Heartbeat after its task was assigned carries the
// WorkerAssignment, exactly once; it is sent again only when the worker
// registers again before having declared its tensors (it never started the
// task). cancelled_job_ids carries each job the worker must stop, once.
//
// Thread-safe.
class Scheduler {
 public:
  // Loads every job of `store`. RUNNING jobs wait for their nodes to register
  // again: a rank whose worker has not come back (with running_job_id/rank)
  // within 2 x heartbeat_timeout is treated as dead, as is a server that has
  // not. `clock` and `servers` must outlive the Scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerOptions options,
                                                           std::unique_ptr<JobStore> store,
                                                           Clock* clock, ServerControl* servers);
  ~Scheduler();  // Stop()s.
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Starts the member thread that calls Tick() every tick_interval.
  // REQUIRES: called at most once.
  void Start();
  // Stops and joins the tick thread. Idempotent.
  void Stop();

  // INVALID_ARGUMENT for a bad role, name or missing server address. A worker
  // that says it runs a task of a RUNNING job at that rank is re-adopted; one
  // that runs a task the scheduler gave up is told to cancel it.
  absl::StatusOr<RegisterNodeResponse> RegisterNode(const RegisterNodeRequest& request);
  // NOT_FOUND (register again) for an unknown or expired node id.
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request);
  // Applies defaults; INVALID_ARGUMENT naming the field for a bad spec.
  absl::StatusOr<SubmitJobResponse> SubmitJob(const SubmitJobRequest& request);
  // NOT_FOUND naming the id.
  absl::StatusOr<JobInfo> GetJob(const GetJobRequest& request);
  // Every job, oldest first.
  absl::StatusOr<ListJobsResponse> ListJobs(const ListJobsRequest& request);
  // PENDING/RUNNING -> CANCELLED (workers told, servers drop the job);
  // FAILED_PRECONDITION ("job-3 already succeeded") for a finished job.
  absl::StatusOr<CancelJobResponse> CancelJob(const CancelJobRequest& request);
  // Every node ever registered (dead ones with alive = false), by name.
  absl::StatusOr<ListNodesResponse> ListNodes(const ListNodesRequest& request);
  // The first call of a job plans its tensors; later ones must declare the
  // same tensors (FAILED_PRECONDITION naming the first difference) and get
  // the same plan. Returns only after every server of the job holds it
  // (ServerControl::CreateJob, idempotent on the server).
  absl::StatusOr<RegisterTensorsResponse> RegisterTensors(const RegisterTensorsRequest& request);
  // Keeps the rank's latest progress and appends a metrics row; cancelled =
  // true when the job is no longer running or the rank was given up.
  absl::StatusOr<ReportProgressResponse> ReportProgress(const ReportProgressRequest& request);
  // A rank is done. An error fails the job ("worker rank R: <error>"); when
  // every live rank has finished the job SUCCEEDED with the summed test
  // results. Repeating a finish is OK.
  absl::StatusOr<FinishTaskResponse> FinishTask(const FinishTaskRequest& request);
  // One point per step after `after_step`, averaged over the ranks.
  absl::StatusOr<GetJobMetricsResponse> GetJobMetrics(const GetJobMetricsRequest& request);

  // Expires silent nodes; gives up the ranks of dead workers (servers are
  // told the new live set; no live rank left fails the job); fails jobs whose
  // server died; retries failed writes and server calls; starts pending jobs.
  // Runs on the member thread once Start()ed; tests call it directly.
  void Tick();

 private:
  struct Job {
    JobRecord record;
    std::map<int, WorkerProgress> progress;  // latest report per rank
    int64_t live_version = 0;                // bumped whenever a rank is given up
    // Server address -> live_version it has acknowledged (absent: 0).
    std::map<std::string, int64_t> live_acked;
    bool dirty = false;  // in memory but not yet in the store
  };
  // What the scheduler knows of a worker, by node name; survives re-registration.
  struct WorkerSlot {
    std::string job_id;  // current task; empty when idle
    int rank = 0;
    bool delivered = false;               // the assignment went out in a heartbeat
    std::vector<std::string> cancelled;  // jobs to tell it to stop
  };
  // (server name, address, job id): a DropJob still to send.
  using DropKey = std::tuple<std::string, std::string, std::string>;

  Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store, Clock* clock,
            ServerControl* servers);
  absl::Status Load();

  absl::StatusOr<Job*> FindJob(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobInfo ToInfo(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the job; on failure marks it dirty for Tick to retry.
  absl::Status Persist(Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartPendingJobs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Handles a (re-)registered worker that says it runs `running_job`/`running_rank`.
  void AdoptWorker(const std::string& name, const std::string& running_job, int running_rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a job: frees its workers, tells the ones still running to stop
  // (unless it succeeded), queues DropJob for its servers. Does not persist.
  void EndJob(Job* job, JobState state, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `rank` dead (its worker died or lost the task). Does not persist.
  void GiveUpRank(Job* job, int rank, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SUCCEEDED when every live rank finished; FAILED when no rank is live.
  void MaybeComplete(Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails the RUNNING jobs hosted on server `name`.
  void FailJobsOfServer(const std::string& name, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<int> LiveRanks(const Job& job) const;
  // Queues "stop `job_id`" for the worker's next heartbeat, once.
  static void AddCancel(WorkerSlot* slot, const std::string& job_id);
  // Sends outstanding SetLiveWorkers/DropJob calls. At most one thread does
  // so at a time; a call that finds another at it leaves the work to it or to
  // the next Tick.
  void FlushServerCalls() ABSL_LOCKS_EXCLUDED(mu_, flush_mu_);
  int64_t NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

  // Constant after construction.
  const SchedulerOptions options_;
  const std::unique_ptr<JobStore> store_;
  Clock* const clock_;
  ServerControl* const servers_;
  // Until then, RUNNING jobs loaded from the store wait for their nodes.
  const absl::Time adopt_deadline_;

  mutable absl::Mutex mu_;
  Membership membership_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);  // by job number: oldest first
  std::map<std::string, WorkerSlot> workers_ ABSL_GUARDED_BY(mu_);
  std::map<DropKey, int> pending_drops_ ABSL_GUARDED_BY(mu_);  // -> attempts so far

  // Serializes FlushServerCalls (held across ServerControl calls; only ever
  // try-locked, so no thread waits on it).
  absl::Mutex flush_mu_;

  absl::Notification stop_;
  std::thread ticker_;
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_SCHEDULER_H_
