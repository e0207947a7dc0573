#ifndef TESSERA_TOOLS_JOB_REPORT_H_
#define TESSERA_TOOLS_JOB_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/scheduler_service.pb.h"

namespace tessera::tools {

// One line: "epoch 2/10  step 938/4690  loss 0.4123  acc 85.2%  2150 ex/s  ETA 23s".
std::string ProgressLine(const JobInfo& job, double now_unix_s);

// "reads: 120 pulls, 40 served from the SSP cache; observed staleness mean 0.8
// max 3 (clocks:reads 0:70 1:50 ...)". `histogram[i]` counts reads of
// staleness i (common/staleness.h).
std::string StalenessLine(int64_t pulls, int64_t saved, const std::vector<int64_t>& histogram);

// A multi-line description for `tessera status`.
std::string DescribeJob(const JobInfo& job);

// The final line of a finished job: "job-1 succeeded: test accuracy 88.71% ...".
std::string ResultLine(const JobInfo& job);

// Writes `points` as CSV (step,epoch,wall_seconds,loss,accuracy) and as an SVG
// plot of loss and accuracy against step.
absl::Status WriteMetrics(const JobInfo& job, const std::vector<MetricPoint>& points,
                          const std::string& csv_path, const std::string& svg_path);

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_JOB_REPORT_H_
