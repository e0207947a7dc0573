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

namespace tessera::scheduler {

// Everything the scheduler must not forget about a job.
struct JobRecord {
  std::string id;  // "job-<n>"
  JobSpec spec;
  JobState state = PENDING;
  std::string error;
  int64_t created_ms = 0;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  std::vector<std::string> worker_names;  // by rank
  std::vector<std::string> server_names;  // the job's servers, in plan order
  std::vector<std::string> server_addresses;
  bool has_plan = false;
  TensorPlan plan;
  double test_accuracy = 0;
  double test_loss = 0;
  int64_t test_examples = 0;
  double train_seconds = 0;
};

// Jobs and their metrics in an SQLite file (WAL mode). Every write is durable
// when the call returns, so an acknowledged change survives kill -9.
// Thread-safe.
class JobStore {
 public:
  // Opens (creating if needed) the database at `path`. UNAVAILABLE naming the
  // path when it cannot be opened or is not a Tessera database.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);
  ~JobStore();

  // Inserts a new job; sets record->id.
  absl::Status Insert(JobRecord* record);
  // Writes every field of an existing job.
  absl::Status Update(const JobRecord& record);
  // Every job, oldest first.
  absl::StatusOr<std::vector<JobRecord>> LoadAll();

  absl::Status AppendMetric(const std::string& job_id, int rank, const WorkerProgress& progress,
                            double wall_seconds);
  // One point per step (> after_step), averaged over the ranks that reported it.
  absl::StatusOr<std::vector<MetricPoint>> Metrics(const std::string& job_id, int64_t after_step);

 private:
  JobStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Error(const char* what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_JOB_STORE_H_
