#ifndef TESSERA_SCHEDULER_JOB_STORE_H_
#define TESSERA_SCHEDULER_JOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/scheduler_service.pb.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tessera::scheduler {

// Where one rank of a running job stands.
enum class TaskState {
  kAssigned = 0,  // given to a worker, which has not declared its tensors yet
  kStarted = 1,   // the worker called RegisterTensors
  kFinished = 2,  // FinishTask without error; its test results are below
  kDead = 3,      // its worker died or dropped it; no longer a live rank
};

const char* TaskStateName(TaskState state);

struct TaskRecord {
  std::string worker;  // node name
  TaskState state = TaskState::kAssigned;
  int64_t test_correct = 0;
  int64_t test_examples = 0;
  double test_loss_sum = 0;
  double train_seconds = 0;
};

// A rank that still takes part in its job: its pushes count on the servers.
inline bool IsLive(const TaskRecord& t) { return t.state != TaskState::kDead; }
// A rank whose worker still has work to do.
inline bool IsRunning(const TaskRecord& t) {
  return t.state == TaskState::kAssigned || t.state == TaskState::kStarted;
}

struct ServerRecord {
  std::string name;
  std::string address;
};

// Everything the scheduler must not forget about a job.
struct JobRecord {
  std::string id;  // "job-<n>"
  JobSpec spec;    // defaults applied
  JobState state = PENDING;
  std::string error;
  int64_t created_ms = 0;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  std::vector<ServerRecord> servers;  // the job's servers, in plan order
  std::vector<TaskRecord> tasks;      // by rank; empty until the job starts
  bool has_plan = false;
  TensorPlan plan;
  double test_accuracy = 0;
  double test_loss = 0;
  int64_t test_examples = 0;
  double train_seconds = 0;
};

// Jobs, their assignments and their metrics in an SQLite file (WAL journal,
// synchronous=FULL): every write has been committed to the file when the call
// returns, so an acknowledged change survives kill -9 (and a power cut).
// Every error names the database path and SQLite's message.
// Thread-safe (calls are serialized on one connection).
class JobStore {
 public:
  // Opens (creating if needed) the database at `path`. UNAVAILABLE naming the
  // path when it cannot be opened or created; DATA_LOSS when the file is not
  // a database; FAILED_PRECONDITION when it is a database of another schema.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Inserts a new job with every field of `record`; sets record->id.
  absl::Status Insert(JobRecord* record);
  // Rewrites every field of an existing job, its servers and tasks, in one
  // transaction. NOT_FOUND when there is no such job.
  absl::Status Update(const JobRecord& record);
  // Every job, oldest first.
  absl::StatusOr<std::vector<JobRecord>> LoadAll();

  // Records one progress report; a second report of the same (rank, step)
  // replaces the first, so a retried RPC does not count twice.
  absl::Status AppendMetric(const std::string& job_id, int rank, const WorkerProgress& progress,
                            double wall_seconds);
  // One point per step > after_step, ordered by step: loss, accuracy and
  // wall_seconds averaged over the ranks that reported the step, the highest
  // epoch among them.
  absl::StatusOr<std::vector<MetricPoint>> Metrics(const std::string& job_id, int64_t after_step);

  const std::string& path() const { return path_; }

 private:
  class Statement;
  JobStore(std::string path, sqlite3* db);

  absl::Status Init() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Prepare(const char* sql, std::unique_ptr<Statement>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An error naming the path, `what` and sqlite3_errmsg.
  absl::Status Error(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteChildren(int64_t num, const JobRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` in a transaction: committed when it returns OK, else rolled back.
  template <typename Body>
  absl::Status Transaction(Body body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  // Prepared once in Open().
  std::unique_ptr<Statement> insert_job_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> update_job_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> delete_servers_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> insert_server_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> delete_tasks_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> insert_task_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> insert_metric_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Statement> select_metrics_ ABSL_GUARDED_BY(mu_);
};

// "job-12" -> 12; NOT_FOUND naming `id` when it is not of that form.
absl::StatusOr<int64_t> JobNumber(const std::string& id);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_JOB_STORE_H_
