#include "tools/consistency_report.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace tessera::tools {

absl::StatusOr<std::vector<BenchMode>> ParseBenchModes(absl::string_view list) {
  std::vector<BenchMode> modes;
  std::set<std::string> seen;
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const std::string name(absl::StripAsciiWhitespace(raw));
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("mode '", name, "' given twice"));
    }
    BenchMode m;
    if (name == "sync") {
      m = {"sync", SYNC, 0, false};
    } else if (name == "async") {
      m = {"async", ASYNC, 0, false};
    } else if (absl::StartsWith(name, "ssp")) {
      absl::string_view rest = absl::string_view(name).substr(3);
      const bool cache = absl::ConsumeSuffix(&rest, "_cache");
      int s = -1;
      if (rest.empty() || !absl::SimpleAtoi(rest, &s) || s < 0 || s > 1000) {
        return absl::InvalidArgumentError(
            absl::StrCat("mode '", name, "': want sspN or sspN_cache with 0 <= N <= 1000"));
      }
      m = {absl::StrCat("ssp s=", s, cache ? " +cache" : ""), SSP, s, cache};
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown mode '", name, "': want sync, async, sspN or sspN_cache (e.g. ssp3)"));
    }
    modes.push_back(std::move(m));
  }
  if (modes.empty()) return absl::InvalidArgumentError("no modes given");
  return modes;
}

Series LossCurve(const std::vector<MetricPoint>& points_in, int window, const std::string& label) {
  std::vector<MetricPoint> points = points_in;
  std::sort(points.begin(), points.end(), [](const MetricPoint& a, const MetricPoint& b) {
    return a.wall_seconds() < b.wall_seconds();
  });
  Series s{label, {}, {}};
  if (window < 1) window = 1;
  double sum = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    sum += points[i].loss();
    if (i >= static_cast<size_t>(window)) sum -= points[i - window].loss();
    if (i + 1 < static_cast<size_t>(window)) continue;
    s.x.push_back(points[i].wall_seconds());
    s.y.push_back(sum / window);
  }
  return s;
}

double TimeToTarget(const Series& curve, double target) {
  for (size_t i = 0; i < curve.x.size() && i < curve.y.size(); ++i) {
    if (curve.y[i] <= target) return curve.x[i];
  }
  return -1;
}

absl::StatusOr<double> MeanStepSeconds(const std::vector<MetricPoint>& points_in,
                                       int64_t skip_steps) {
  std::vector<MetricPoint> points;
  for (const MetricPoint& p : points_in) {
    if (p.step() > skip_steps) points.push_back(p);
  }
  std::sort(points.begin(), points.end(),
            [](const MetricPoint& a, const MetricPoint& b) { return a.step() < b.step(); });
  if (points.size() < 2 || points.back().step() == points.front().step()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "need two metric points after step ", skip_steps, " to time a step, have ", points.size()));
  }
  return (points.back().wall_seconds() - points.front().wall_seconds()) /
         static_cast<double>(points.back().step() - points.front().step());
}

MeanSd Summarize(const std::vector<double>& values) {
  MeanSd r;
  r.n = static_cast<int>(values.size());
  if (r.n == 0) return r;
  for (double v : values) r.mean += v;
  r.mean /= r.n;
  if (r.n < 2) return r;
  double ss = 0;
  for (double v : values) ss += (v - r.mean) * (v - r.mean);
  r.sd = std::sqrt(ss / (r.n - 1));
  return r;
}

std::vector<ModeSummary> SummarizeRuns(const std::vector<RunOutcome>& runs) {
  using Key = std::tuple<std::string, std::string, std::string>;
  std::vector<Key> order;
  std::map<Key, std::vector<const RunOutcome*>> groups;
  std::map<std::tuple<std::string, std::string, int>, const RunOutcome*> sync_of;
  for (const RunOutcome& r : runs) {
    Key k{r.model, r.scenario, r.mode};
    if (groups.find(k) == groups.end()) order.push_back(k);
    groups[k].push_back(&r);
    if (r.mode == "sync") sync_of[{r.model, r.scenario, r.seed}] = &r;
  }
  std::vector<ModeSummary> rows;
  for (const Key& k : order) {
    ModeSummary row;
    std::tie(row.model, row.scenario, row.mode) = k;
    std::vector<double> to_target, speedup, train, loss, acc, acc_vs_sync, staleness, pulls, saved;
    for (const RunOutcome* r : groups[k]) {
      ++row.runs;
      row.target = r->target;
      if (r->wall_to_target > 0) to_target.push_back(r->wall_to_target);
      train.push_back(r->train_seconds);
      loss.push_back(r->final_loss);
      acc.push_back(r->test_accuracy);
      staleness.push_back(r->mean_staleness);
      row.max_staleness = std::max(row.max_staleness, r->max_staleness);
      pulls.push_back(static_cast<double>(r->pulls));
      saved.push_back(static_cast<double>(r->pulls_saved));
      auto sync = sync_of.find({r->model, r->scenario, r->seed});
      if (sync == sync_of.end()) continue;
      acc_vs_sync.push_back(r->test_accuracy - sync->second->test_accuracy);
      if (r->wall_to_target > 0 && sync->second->wall_to_target > 0) {
        speedup.push_back(sync->second->wall_to_target / r->wall_to_target);
      }
    }
    row.wall_to_target = Summarize(to_target);
    row.speedup = Summarize(speedup);
    row.train_seconds = Summarize(train);
    row.final_loss = Summarize(loss);
    row.test_accuracy = Summarize(acc);
    row.accuracy_vs_sync = Summarize(acc_vs_sync);
    row.mean_staleness = Summarize(staleness);
    row.pulls = Summarize(pulls);
    row.pulls_saved = Summarize(saved);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string RunsCsv(const std::vector<RunOutcome>& runs) {
  std::string csv =
      "model,scenario,mode,seed,state,target_loss,seconds_to_target_loss,train_seconds,"
      "final_train_loss,test_accuracy,mean_staleness,max_staleness,pulls,pulls_saved\n";
  for (const RunOutcome& o : runs) {
    absl::StrAppendFormat(&csv, "%s,%s,%s,%d,%s,%.4f,%.2f,%.2f,%.5f,%.4f,%.3f,%d,%d,%d\n", o.model,
                          o.scenario, o.mode, o.seed, o.state, o.target, o.wall_to_target,
                          o.train_seconds, o.final_loss, o.test_accuracy, o.mean_staleness,
                          o.max_staleness, o.pulls, o.pulls_saved);
  }
  return csv;
}

std::string SummaryCsv(const std::vector<ModeSummary>& rows) {
  std::string csv =
      "model,scenario,mode,runs,target_loss,"
      "seconds_to_target_n,seconds_to_target_mean,seconds_to_target_sd,"
      "speedup_n,speedup_mean,speedup_sd,train_seconds_mean,train_seconds_sd,"
      "final_train_loss_mean,final_train_loss_sd,test_accuracy_mean,test_accuracy_sd,"
      "accuracy_minus_sync_n,accuracy_minus_sync_mean,accuracy_minus_sync_sd,"
      "mean_staleness,max_staleness,pulls_mean,pulls_saved_mean\n";
  for (const ModeSummary& r : rows) {
    absl::StrAppendFormat(
        &csv, "%s,%s,%s,%d,%.4f,%d,%.2f,%.2f,%d,%.3f,%.3f,%.2f,%.2f,%.5f,%.5f,%.4f,%.4f,%d,%.4f,%.4f,"
              "%.3f,%d,%.0f,%.0f\n",
        r.model, r.scenario, r.mode, r.runs, r.target, r.wall_to_target.n, r.wall_to_target.mean,
        r.wall_to_target.sd, r.speedup.n, r.speedup.mean, r.speedup.sd, r.train_seconds.mean,
        r.train_seconds.sd, r.final_loss.mean, r.final_loss.sd, r.test_accuracy.mean,
        r.test_accuracy.sd, r.accuracy_vs_sync.n, r.accuracy_vs_sync.mean, r.accuracy_vs_sync.sd,
        r.mean_staleness.mean, r.max_staleness, r.pulls.mean, r.pulls_saved.mean);
  }
  return csv;
}

namespace {

// "12.3" for one run, "12.3 ± 0.4" for several; "-" for none. `of` < 0:
// no count; otherwise " (n/of)" is added when fewer than `of` values exist.
std::string Cell(const MeanSd& v, int runs, int precision, double scale = 1,
                 const std::string& suffix = "", bool sign = false, int of = -1) {
  if (v.n == 0) return "-";
  const char* fmt = sign ? "%+.*f" : "%.*f";
  std::string s = absl::StrFormat(fmt, precision, v.mean * scale);
  if (runs > 1) absl::StrAppendFormat(&s, " ± %.*f", precision, v.sd * scale);
  s += suffix;
  if (of >= 0 && v.n < of) absl::StrAppendFormat(&s, " (%d/%d)", v.n, of);
  return s;
}

}  // namespace

std::string SummaryMarkdown(const std::vector<ModeSummary>& rows) {
  std::string md =
      "| model | stragglers | mode | seeds | target loss | time to target (s) | speed-up vs sync | "
      "train time (s) | final train loss | test acc (%) | acc − sync (pt) | "
      "staleness mean / max | pulls (saved by cache) |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const ModeSummary& r : rows) {
    const std::string to_target =
        r.wall_to_target.n == 0 ? std::string("not reached")
                                : Cell(r.wall_to_target, r.runs, 1, 1, "", false, r.runs);
    const bool is_sync = r.mode == "sync";
    absl::StrAppendFormat(
        &md, "| %s | %s | %s | %d | %.3f | %s | %s | %s | %s | %s | %s | %.2f / %d | %.0f (%.0f) |\n",
        r.model, r.scenario, r.mode, r.runs, r.target, to_target,
        is_sync && r.wall_to_target.n > 0 ? std::string("1.00x") : Cell(r.speedup, r.runs, 2, 1, "x", false, r.runs),
        Cell(r.train_seconds, r.runs, 1), Cell(r.final_loss, r.runs, 4),
        Cell(r.test_accuracy, r.runs, 2, 100),
        is_sync ? std::string("0") : Cell(r.accuracy_vs_sync, r.runs, 2, 100, "", true),
        r.mean_staleness.mean, r.max_staleness, r.pulls.mean, r.pulls_saved.mean);
  }
  return md;
}

}  // namespace tessera::tools
