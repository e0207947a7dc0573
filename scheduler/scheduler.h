#ifndef TESSERA_SCHEDULER_SCHEDULER_H_
#define TESSERA_SCHEDULER_SCHEDULER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proto/scheduler_service.pb.h"
#include "scheduler/job_store.h"
#include "scheduler/server_control.h"

namespace tessera::scheduler {

struct SchedulerOptions {
  absl::Duration heartbeat_timeout = absl::Seconds(5);    // silent this long = dead
  absl::Duration heartbeat_interval = absl::Milliseconds(500);  // told to nodes
  uint64_t split_threshold = 16384;  // tensors this large are split over all servers

  absl::Status Validate() const;
};

// The cluster's brain: membership, jobs, plans, failure handling. Methods
// mirror the SchedulerService RPCs and take/return its messages; the gRPC
// adapter is scheduler/rpc/scheduler_service.h. Every job change is written to
// the JobStore before the method returns. Calls to servers (ServerControl)
// are made without holding the lock. Thread-safe.
class Scheduler {
 public:
  // `store` is owned; `clock` and `servers` must outlive the Scheduler.
  Scheduler(SchedulerOptions options, std::unique_ptr<JobStore> store, Clock* clock,
            ServerControl* servers);

  // Loads the jobs of an existing database. Running jobs wait for their nodes
  // to re-register (grace period: 2 x heartbeat_timeout).
  absl::Status Init();

  absl::StatusOr<RegisterNodeResponse> RegisterNode(const RegisterNodeRequest& request);
  absl::StatusOr<HeartbeatResponse> Heartbeat(const HeartbeatRequest& request);
  absl::StatusOr<SubmitJobResponse> SubmitJob(const SubmitJobRequest& request);
  absl::StatusOr<JobInfo> GetJob(const GetJobRequest& request);
  absl::StatusOr<ListJobsResponse> ListJobs(const ListJobsRequest& request);
  absl::StatusOr<CancelJobResponse> CancelJob(const CancelJobRequest& request);
  absl::StatusOr<ListNodesResponse> ListNodes(const ListNodesRequest& request);
  absl::StatusOr<RegisterTensorsResponse> RegisterTensors(const RegisterTensorsRequest& request);
  absl::StatusOr<ReportProgressResponse> ReportProgress(const ReportProgressRequest& request);
  absl::StatusOr<FinishTaskResponse> FinishTask(const FinishTaskRequest& request);
  absl::StatusOr<GetJobMetricsResponse> GetJobMetrics(const GetJobMetricsRequest& request);

  // Detects dead nodes, fails or shrinks their jobs, starts pending jobs.
  // Called periodically (SchedulerServer runs it every heartbeat interval).
  void Tick();

 private:
  struct Node {
    std::string id;
    std::string name;
    NodeRole role = NODE_ROLE_UNSPECIFIED;
    std::string address;
    absl::Time last_seen;
    std::string job_id;  // task it runs (workers) — empty when idle
    int rank = 0;
    bool has_assignment = false;  // to deliver in the next heartbeat
    WorkerAssignment assignment;
    std::vector<std::string> cancelled;  // to deliver in the next heartbeat
  };
  struct Job {
    JobRecord record;
    std::set<int> live_ranks;
    std::map<int, WorkerProgress> progress;
    std::map<int, FinishTaskRequest> finished;
    absl::Time adopt_until;  // after a restart: nodes may re-register until then
  };
  // A call to a server, made after the lock is released.
  using ServerCall = std::function<void()>;

  bool Alive(const Node& n) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Node* NodeByName(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Job*> FindJob(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobInfo ToInfo(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Persist(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the pending jobs that fit on the idle nodes.
  void StartPendingJobs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a running job: frees its workers, tells them to stop (unless it
  // succeeded), drops it on its servers.
  void EndJob(Job* job, JobState state, const std::string& error, std::vector<ServerCall>* calls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `rank` from a running job's live set (its worker died).
  void LoseWorker(Job* job, int rank, std::vector<ServerCall>* calls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeComplete(Job* job, std::vector<ServerCall>* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(std::vector<ServerCall>& calls) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t NowMs() { return absl::ToUnixMillis(clock_->Now()); }

  const SchedulerOptions options_;
  const std::unique_ptr<JobStore> store_;
  Clock* const clock_;
  ServerControl* const servers_;

  mutable absl::Mutex mu_;
  int64_t next_node_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);  // by node id
  std::map<int64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);        // by job number, oldest first
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_SCHEDULER_H_
