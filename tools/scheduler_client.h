#ifndef TESSERA_TOOLS_SCHEDULER_CLIENT_H_
#define TESSERA_TOOLS_SCHEDULER_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/scheduler_service.grpc.pb.h"

namespace tessera::tools {

// The CLI's calls to the scheduler. Every call has a deadline; every error
// names the scheduler's address. Thread-safe.
class SchedulerClient {
 public:
  SchedulerClient(const std::string& address, absl::Duration timeout);

  const std::string& address() const { return address_; }

  absl::StatusOr<std::string> Submit(const JobSpec& spec);
  absl::StatusOr<JobInfo> GetJob(const std::string& job_id);
  absl::StatusOr<std::vector<JobInfo>> ListJobs();
  absl::StatusOr<JobState> Cancel(const std::string& job_id);
  absl::StatusOr<std::vector<NodeInfo>> ListNodes();
  absl::StatusOr<std::vector<MetricPoint>> GetMetrics(const std::string& job_id, int64_t after_step);

 private:
  template <typename Req, typename Resp, typename Method>
  absl::Status Call(Method method, const Req& request, Resp* response);

  const std::string address_;
  const absl::Duration timeout_;
  std::unique_ptr<SchedulerService::Stub> stub_;
};

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_SCHEDULER_CLIENT_H_
