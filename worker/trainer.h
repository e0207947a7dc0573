#ifndef TESSERA_WORKER_TRAINER_H_
#define TESSERA_WORKER_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/scheduler_service.pb.h"
#include "worker/compute_backend.h"
#include "worker/dataset.h"
#include "worker/parameter_client.h"

namespace tessera::worker {

// The scheduler as a running task sees it. Implemented over gRPC in
// worker/rpc/scheduler_link.h; tests use fakes.
class TaskReporter {
 public:
  virtual ~TaskReporter() = default;
  // Declares the model's tensors; returns where they live.
  virtual absl::StatusOr<TensorPlan> RegisterTensors(const std::string& job_id, int rank,
                                                     const std::vector<TensorSpec>& tensors) = 0;
  // Returns true when the job was cancelled and the task must stop.
  virtual absl::StatusOr<bool> ReportProgress(const std::string& job_id,
                                              const WorkerProgress& progress,
                                              double wall_seconds) = 0;
  virtual absl::Status FinishTask(const FinishTaskRequest& request) = 0;
};

// Loads data sets once per path and keeps them for later tasks. Thread-compatible.
class DatasetCache {
 public:
  // Returns the train or test split at `spec.path()`, limited as the spec says.
  absl::StatusOr<const Dataset*> Get(const DataSpec& spec, bool train);

 private:
  struct Entry {
    std::string key;
    std::unique_ptr<Dataset> data;
  };
  std::vector<Entry> entries_;
};

struct TaskResult {
  int64_t steps = 0;
  double train_seconds = 0;
  int64_t test_correct = 0;
  int64_t test_examples = 0;
  double test_loss_sum = 0;
  bool cancelled = false;
  // Where the training time went (seconds), as the training thread saw it:
  //   pull: blocked starting or waiting for pulls (the batch is gathered
  //     while a pull is in flight and counts as compute);
  //   compute: forward/backward (minus time inside PushTensor calls) and
  //     batch preparation;
  //   push: inside PushTensor calls and FinishPush;
  //   overlap: from the first gradient handed to the client to the end of
  //     backward, per step: the window in which a streaming client can send
  //     while backward runs (how much it actually sends then is the client's).
  double pull_seconds = 0;
  double compute_seconds = 0;
  double push_seconds = 0;
  double overlap_seconds = 0;
  // Parameter reads: pulls sent, reads served from the cache (SSP), and the
  // observed staleness of every read (kStalenessBuckets entries, see
  // ObservedStaleness in server/shard_store.h).
  int64_t pulls = 0;
  int64_t pulls_saved = 0;
  std::vector<int64_t> staleness_histogram;
  double straggler_seconds = 0;  // injected pauses
};

// Whether a worker at `clock` may train on parameters it read earlier with
// view clock `cached_view` instead of pulling: only in SSP with ssp_cache, and only while the
// cache holds every live worker's pushes for clocks < clock - staleness, the
// same guarantee a pull would give. `cached_view` < -1 means no cache.
bool CacheServes(const JobSpec& spec, int64_t clock, int64_t cached_view);

// Injected slowness of one worker (JobSpec.straggler). Used by one thread.
class StragglerInjector {
 public:
  StragglerInjector(const StragglerSpec& spec, uint64_t seed, int rank);
  // Pause before a step: transient_delay_ms with transient_probability, else 0.
  absl::Duration BeforeStep();
  // Pause after a step's compute of `compute`: (factor - 1) x compute for the
  // persistent straggler rank, else 0.
  absl::Duration AfterCompute(absl::Duration compute) const;
  // Whether this rank is the persistent straggler.
  bool persistent() const { return persistent_; }

 private:
  const StragglerSpec spec_;
  const bool persistent_;
  std::mt19937_64 rng_;
};

// Runs one worker's part of a job: registers the model's tensors, then for each
// step pulls the parameters (as fresh as the job's mode needs; in SSP the
// previous read is reused while CacheServes), computes the
// gradient of its batch and pushes it; finally evaluates its part of the test
// set on the final parameters. Progress goes to the TaskReporter every
// log_every_steps. Used by one thread.
class Trainer {
 public:
  // `reporter` must outlive the Trainer; `cancel` may be set from another
  // thread to stop the task between steps. `backend` (borrowed; outlives the
  // Trainer) runs the model's math; null: the CPU.
  Trainer(TaskReporter* reporter, ParameterClientFactory client_factory, DatasetCache* datasets,
          const std::atomic<bool>* cancel, ComputeBackend* backend = nullptr);

  // Runs the task. The caller reports the outcome with FinishTask.
  absl::StatusOr<TaskResult> Run(const WorkerAssignment& assignment);

 private:
  TaskReporter* const reporter_;
  const ParameterClientFactory client_factory_;
  DatasetCache* const datasets_;
  const std::atomic<bool>* const cancel_;
  ComputeBackend* const backend_;
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_TRAINER_H_
