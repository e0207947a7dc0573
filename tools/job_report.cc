#include "tools/job_report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "tools/svg_plot.h"

namespace tessera::tools {
namespace {

std::string Duration(double s) {
  if (s < 0) s = 0;
  if (s < 120) return absl::StrFormat("%.0fs", s);
  if (s < 7200) return absl::StrFormat("%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
  return absl::StrFormat("%.1fh", s / 3600);
}

std::string ModelLine(const JobSpec& spec) {
  std::string model = ModelName(spec.model().kind());
  if (spec.model().hidden_layers_size() > 0) {
    absl::StrAppend(&model, " [", absl::StrJoin(spec.model().hidden_layers(), ","), "]");
  }
  std::string mode = ModeName(spec.mode());
  if (spec.mode() == SSP) absl::StrAppend(&mode, " s=", spec.staleness());
  return absl::StrFormat("%s, %s lr=%g, %s, batch %d x %d workers, %d servers, %d epochs", model,
                         OptimizerName(spec.optimizer().kind()), spec.optimizer().learning_rate(),
                         mode, spec.batch_size(), spec.num_workers(), spec.num_servers(),
                         spec.epochs());
}

}  // namespace

std::string StalenessLine(int64_t pulls, int64_t saved, const std::vector<int64_t>& histogram) {
  std::string line = absl::StrFormat("reads: %d pulls, %d served from the SSP cache", pulls, saved);
  int64_t total = 0, weighted = 0, max = 0;
  std::vector<std::string> buckets;
  for (size_t i = 0; i < histogram.size(); ++i) {
    if (histogram[i] == 0) continue;
    total += histogram[i];
    weighted += static_cast<int64_t>(i) * histogram[i];
    max = static_cast<int64_t>(i);
    const bool last = i + 1 == histogram.size();
    buckets.push_back(absl::StrCat(i, last ? "+" : "", ":", histogram[i]));
  }
  if (total > 0) {
    absl::StrAppendFormat(&line, "; observed staleness mean %.2f max %d (clocks:reads %s)",
                          static_cast<double>(weighted) / total, max,
                          absl::StrJoin(buckets, " "));
  }
  return line;
}

std::string ProgressLine(const JobInfo& job, double now_unix_s) {
  if (job.workers_size() == 0) return absl::StrCat(job.job_id(), " ", JobStateName(job.state()));
  int64_t step = job.workers(0).step(), total = job.workers(0).total_steps();
  int epoch = 0;
  double loss = 0, acc = 0;
  for (const WorkerProgress& w : job.workers()) {
    step = std::min(step, w.step());
    total = std::max(total, w.total_steps());
    epoch = std::max(epoch, w.epoch());
    loss += w.loss();
    acc += w.accuracy();
  }
  loss /= job.workers_size();
  acc /= job.workers_size();
  const double elapsed = now_unix_s - job.started_unix_ms() / 1000.0;
  const double rate = elapsed > 0 ? step / elapsed : 0;
  const double examples =
      rate * job.spec().batch_size() * std::max(1, job.workers_size());
  std::string line = absl::StrFormat("epoch %d/%d  step %d/%d  loss %.4f  train acc %.1f%%  %.0f ex/s",
                                     epoch + 1, job.spec().epochs(), step, total, loss, 100 * acc,
                                     examples);
  if (rate > 0 && total > step) absl::StrAppend(&line, "  ETA ", Duration((total - step) / rate));
  return line;
}

std::string ResultLine(const JobInfo& job) {
  switch (job.state()) {
    case SUCCEEDED:
      return absl::StrFormat(
          "%s succeeded: test accuracy %.2f%% on %d examples, test loss %.4f, training %.1f s",
          job.job_id(), 100 * job.test_accuracy(), job.test_examples(), job.test_loss(),
          job.train_seconds());
    case FAILED:
      return absl::StrCat(job.job_id(), " failed: ", job.error());
    case CANCELLED:
      return absl::StrCat(job.job_id(), " cancelled", job.error().empty() ? "" : ": ", job.error());
    default:
      return absl::StrCat(job.job_id(), " ", JobStateName(job.state()));
  }
}

std::string DescribeJob(const JobInfo& job) {
  std::string out = absl::StrFormat("%s  %s  %s\n  %s\n", job.job_id(), job.name(),
                                    JobStateName(job.state()), ModelLine(job.spec()));
  std::vector<int64_t> staleness;
  int64_t pulls = 0, saved = 0;
  for (const WorkerProgress& w : job.workers()) {
    absl::StrAppendFormat(&out, "  rank %d: epoch %d step %d/%d loss %.4f train acc %.1f%%%s\n",
                          w.rank(), w.epoch() + 1, w.step(), w.total_steps(), w.loss(),
                          100 * w.accuracy(), w.finished() ? " (finished)" : "");
    pulls += w.pulls();
    saved += w.pulls_saved();
    if (staleness.size() < static_cast<size_t>(w.staleness_histogram_size())) {
      staleness.resize(w.staleness_histogram_size());
    }
    for (int i = 0; i < w.staleness_histogram_size(); ++i) staleness[i] += w.staleness_histogram(i);
  }
  if (pulls + saved > 0) absl::StrAppend(&out, "  ", StalenessLine(pulls, saved, staleness), "\n");
  if (job.state() == SUCCEEDED || job.state() == FAILED || job.state() == CANCELLED) {
    absl::StrAppend(&out, "  ", ResultLine(job), "\n");
  }
  return out;
}

absl::Status WriteMetrics(const JobInfo& job, const std::vector<MetricPoint>& points,
                          const std::string& csv_path, const std::string& svg_path) {
  std::string csv = "step,epoch,wall_seconds,loss,accuracy\n";
  Series loss{"train loss", {}, {}}, acc{"train accuracy", {}, {}};
  for (const MetricPoint& p : points) {
    absl::StrAppendFormat(&csv, "%d,%d,%.3f,%.6f,%.6f\n", p.step(), p.epoch(), p.wall_seconds(),
                          p.loss(), p.accuracy());
    loss.x.push_back(p.step());
    loss.y.push_back(p.loss());
    acc.x.push_back(p.step());
    acc.y.push_back(p.accuracy());
  }
  TESSERA_RETURN_IF_ERROR(WriteFileAtomically(csv_path, csv));
  std::string title = absl::StrCat(job.job_id(), " ", job.name(), ": ", ModelLine(job.spec()));
  if (job.state() == SUCCEEDED) {
    absl::StrAppendFormat(&title, "; test accuracy %.2f%%", 100 * job.test_accuracy());
  }
  const std::string svg = RenderSvg(
      title, {Panel{"training loss", "step", "loss (mean over each reporting window)", {loss}, {}},
              Panel{"training accuracy", "step", "accuracy", {acc}, {}}});
  return WriteFileAtomically(svg_path, svg);
}

}  // namespace tessera::tools
