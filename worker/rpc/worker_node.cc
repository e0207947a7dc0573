#include "worker/rpc/worker_node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace tessera::worker {

absl::Status WorkerNodeOptions::Validate() const {
  if (scheduler.empty()) return absl::InvalidArgumentError("--scheduler is required (host:port)");
  if (name.empty()) return absl::InvalidArgumentError("--name must not be empty");
  if (rpc_timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("rpc timeout must be > 0");
  if (ps.streams < 1 || ps.streams > kMaxStreams) {
    return absl::InvalidArgumentError(absl::StrCat("--streams must be in [1, ", kMaxStreams, "]"));
  }
  return absl::OkStatus();
}

WorkerNode::WorkerNode(WorkerNodeOptions options, ComputeBackend* backend)
    : options_(std::move(options)),
      backend_(backend),
      link_(options_.scheduler, options_.rpc_timeout, options_.retry_for) {}

WorkerNode::~WorkerNode() {
  Stop();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

absl::Status WorkerNode::Register() {
  RegisterNodeRequest request;
  request.set_role(WORKER);
  request.set_name(options_.name);
  {
    absl::MutexLock lock(&mu_);
    request.set_running_job_id(running_job_);
    request.set_running_rank(running_rank_);
  }
  absl::StatusOr<RegisterNodeResponse> response = link_.RegisterNode(request);
  if (!response.ok()) return response.status();
  absl::MutexLock lock(&mu_);
  node_id_ = response->node_id();
  if (response->heartbeat_interval_ms() > 0) {
    heartbeat_interval_ = absl::Milliseconds(response->heartbeat_interval_ms());
  }
  spdlog::info("registered with scheduler {} as {}", options_.scheduler, node_id_);
  return absl::OkStatus();
}

absl::Status WorkerNode::Start() {
  const absl::Time give_up = absl::Now() + options_.connect_timeout;
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    absl::Status st = Register();
    if (st.ok()) break;
    if (st.code() != absl::StatusCode::kUnavailable &&
        st.code() != absl::StatusCode::kDeadlineExceeded) {
      return st;
    }
    if (absl::Now() + backoff > give_up) {
      return absl::UnavailableError(absl::StrCat("cannot reach the scheduler at ",
                                                 options_.scheduler, " within ",
                                                 absl::FormatDuration(options_.connect_timeout),
                                                 ": ", st.message()));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  return absl::OkStatus();
}

void WorkerNode::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  cancel_task_ = true;
}

void WorkerNode::HeartbeatLoop() {
  while (true) {
    std::string node_id;
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      node_id = node_id_;
      interval = heartbeat_interval_;
    }
    absl::StatusOr<HeartbeatResponse> response = link_.Heartbeat(node_id);
    if (response.ok()) {
      absl::MutexLock lock(&mu_);
      if (response->has_assignment()) {
        spdlog::info("assigned {} rank {}/{}", response->assignment().job_id(),
                     response->assignment().rank(), response->assignment().num_workers());
        pending_.push_back(response->assignment());
      }
      for (const std::string& job : response->cancelled_job_ids()) {
        if (job == running_job_) {
          spdlog::info("job {} cancelled by the scheduler", job);
          cancel_task_ = true;
        }
        pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                      [&](const WorkerAssignment& a) { return a.job_id() == job; }),
                       pending_.end());
      }
    } else if (response.status().code() == absl::StatusCode::kNotFound) {
      // The scheduler restarted and forgot us: register again, naming our task.
      spdlog::warn("{}; registering again", std::string(response.status().message()));
      absl::Status st = Register();
      if (!st.ok()) spdlog::warn("{}", std::string(st.message()));
    } else {
      spdlog::warn("{}", std::string(response.status().message()));
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), interval);
  }
}

absl::Status WorkerNode::Run() {
  while (true) {
    WorkerAssignment assignment;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return absl::OkStatus();
      assignment = std::move(pending_.front());
      pending_.pop_front();
      running_job_ = assignment.job_id();
      running_rank_ = assignment.rank();
      cancel_task_ = false;
    }
    RunTask(assignment);
    absl::MutexLock lock(&mu_);
    running_job_.clear();
    running_rank_ = 0;
  }
}

void WorkerNode::RunTask(const WorkerAssignment& assignment) {
  Trainer trainer(&link_, GrpcParameterClientFactory(options_.ps), &datasets_, &cancel_task_,
                  backend_);
  absl::StatusOr<TaskResult> result = trainer.Run(assignment);
  FinishTaskRequest finish;
  finish.set_job_id(assignment.job_id());
  finish.set_rank(assignment.rank());
  if (!result.ok()) {
    spdlog::error("job {} rank {} failed: {}", assignment.job_id(), assignment.rank(),
                  result.status().ToString());
    finish.set_error(result.status().ToString());
  } else if (result->cancelled) {
    spdlog::info("job {} rank {} stopped (cancelled)", assignment.job_id(), assignment.rank());
    return;  // the scheduler already knows
  } else {
    finish.set_test_correct(result->test_correct);
    finish.set_test_examples(result->test_examples);
    finish.set_test_loss_sum(result->test_loss_sum);
    finish.set_train_seconds(result->train_seconds);
  }
  absl::Status st = link_.FinishTask(finish);
  if (!st.ok()) spdlog::error("could not report the end of job {}: {}", assignment.job_id(), std::string(st.message()));
}

}  // namespace tessera::worker
