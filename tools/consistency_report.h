#ifndef TESSERA_TOOLS_CONSISTENCY_REPORT_H_
#define TESSERA_TOOLS_CONSISTENCY_REPORT_H_

// The bookkeeping of `tessera bench consistency` (bench_consistency_main.cc),
// kept apart from the program so it can be tested: which modes to run, the
// smoothed loss curve of a job, and the per-mode summary over seeds.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/scheduler_service.pb.h"
#include "tools/svg_plot.h"

namespace tessera::tools {

// One consistency setting the benchmark runs.
struct BenchMode {
  std::string label;  // "sync", "ssp s=3", "async", "ssp s=3 +cache"
  ConsistencyMode mode = SYNC;
  int staleness = 0;
  bool cache = false;
};

// Parses a comma-separated list of `sync`, `async`, `sspN` and `sspN_cache`
// (N >= 0, e.g. "sync,ssp3,async"). Unknown or repeated names are
// INVALID_ARGUMENT naming the entry.
absl::StatusOr<std::vector<BenchMode>> ParseBenchModes(absl::string_view list);

// The training loss against wall time of one job. `points` are the job's
// metrics (one per logged step, loss and wall time already averaged over the
// workers that logged it); point i of the result is the mean loss of the
// latest `window` points by wall time, at the time of the last of them.
Series LossCurve(const std::vector<MetricPoint>& points, int window, const std::string& label);

// The first x at which `curve` is at or below `target`; -1 if never.
double TimeToTarget(const Series& curve, double target);

// The mean wall time of one step from a job's metric points: the slope of
// wall time against step from the first point with step > `skip_steps` to the
// last, so start-up (registration, the first pulls) does not count.
// FAILED_PRECONDITION when fewer than two such points exist.
absl::StatusOr<double> MeanStepSeconds(const std::vector<MetricPoint>& points, int64_t skip_steps);

// What one job of the benchmark produced.
struct RunOutcome {
  std::string model, scenario, mode;  // mode: BenchMode::label
  int seed = 0;
  std::string state;           // "succeeded", ...
  double target = 0;           // training loss the time to target is measured at
  double wall_to_target = -1;  // seconds; -1: never reached
  double train_seconds = 0;
  double final_loss = 0;       // last point of `curve`
  double test_accuracy = 0;    // fraction
  double mean_staleness = 0;
  int max_staleness = 0;
  int64_t pulls = 0, pulls_saved = 0;
  Series curve;
};

// Mean and sample standard deviation (0 when n < 2) of some values.
struct MeanSd {
  int n = 0;
  double mean = 0, sd = 0;
};
MeanSd Summarize(const std::vector<double>& values);

// One row of the summary table: a (model, scenario, mode) over its seeds.
struct ModeSummary {
  std::string model, scenario, mode;
  int runs = 0;
  double target = 0;
  MeanSd wall_to_target;  // over the seeds that reached the target
  // sync's time to target / this mode's, per seed against sync of the same
  // model, scenario and seed; over the seeds where both reached the target.
  MeanSd speedup;
  MeanSd train_seconds, final_loss, test_accuracy;
  // This mode's test accuracy minus sync's, per seed as above (fraction).
  MeanSd accuracy_vs_sync;
  MeanSd mean_staleness;
  int max_staleness = 0;  // over all runs
  MeanSd pulls, pulls_saved;
};

// Groups `runs` by (model, scenario, mode), in the order they first appear.
std::vector<ModeSummary> SummarizeRuns(const std::vector<RunOutcome>& runs);

// One CSV line per run, with a header line.
std::string RunsCsv(const std::vector<RunOutcome>& runs);

// One CSV line per summary row (means, sds and counts), with a header line.
std::string SummaryCsv(const std::vector<ModeSummary>& rows);

// The markdown table of the summary rows (header included). With one run per
// row it shows plain values; otherwise "mean ± sd".
std::string SummaryMarkdown(const std::vector<ModeSummary>& rows);

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_CONSISTENCY_REPORT_H_
