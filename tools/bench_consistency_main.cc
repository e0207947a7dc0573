// tessera-bench-consistency (also `tessera bench consistency`): sync, SSP and
// async on a local cluster with injected stragglers. For each model
// (softmax regression, MLP) and straggler scenario (transient: each step with
// probability p a worker pauses D = 5x the mean step; persistent: rank 0 runs
// 2x slower; none) it runs each mode (default sync, ssp s = 1, 3, 10, async and
// ssp s = 3 with the cache) once per seed on Fashion-MNIST, and records the
// wall time to a fixed training loss, the final test accuracy and the observed
// staleness. Writes consistency.md (mean and sd over the seeds),
// consistency.csv (one line per run), consistency_summary.csv and one SVG per
// model (training loss against wall time of the first seed, a panel per
// scenario) to --out.
//
// Runs go model by model, then scenario, then seed, then mode, so the runs a
// speed-up compares (same seed) are close in time on a machine whose load
// drifts. Training loss at time t: see LossCurve in tools/consistency_report.h.

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "tools/cli_args.h"
#include "tools/consistency_report.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"
#include "tools/svg_plot.h"

namespace tessera::tools {
namespace {

absl::StatusOr<JobInfo> RunJob(SchedulerClient& client, LocalCluster& cluster,
                               const JobSpec& spec, absl::Duration timeout) {
  TESSERA_ASSIGN_OR_RETURN(std::string id, client.Submit(spec));
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    TESSERA_RETURN_IF_ERROR(cluster.CheckHealth());
    TESSERA_ASSIGN_OR_RETURN(JobInfo job, client.GetJob(id));
    if (job.state() == SUCCEEDED || job.state() == FAILED || job.state() == CANCELLED) return job;
    absl::SleepFor(absl::Milliseconds(200));
  }
  (void)client.Cancel(id);
  return absl::DeadlineExceededError(absl::StrCat(id, " did not finish in ", absl::FormatDuration(timeout)));
}

// "0.52 0.61 0.80" from /proc/loadavg (1, 5 and 15 minute load averages).
std::string LoadAverages() {
  absl::StatusOr<std::string> text = ReadFile("/proc/loadavg");
  if (!text.ok()) return "unknown";
  std::vector<std::string> fields = absl::StrSplit(*text, ' ', absl::SkipWhitespace());
  if (fields.size() < 3) return "unknown";
  return absl::StrCat(fields[0], " ", fields[1], " ", fields[2]);
}

// A finished job's outcome; wall_to_target and target are filled in later.
RunOutcome ToOutcome(SchedulerClient& client, const JobInfo& job, const std::string& model,
                     const std::string& scenario, const BenchMode& m, int seed, int window) {
  RunOutcome o;
  o.model = model;
  o.scenario = scenario;
  o.mode = m.label;
  o.seed = seed;
  o.state = JobStateName(job.state());
  o.train_seconds = job.train_seconds();
  o.test_accuracy = job.test_accuracy();
  std::vector<int64_t> hist;
  for (const WorkerProgress& w : job.workers()) {
    o.pulls += w.pulls();
    o.pulls_saved += w.pulls_saved();
    hist.resize(std::max<size_t>(hist.size(), w.staleness_histogram_size()));
    for (int i = 0; i < w.staleness_histogram_size(); ++i) hist[i] += w.staleness_histogram(i);
  }
  int64_t reads = 0, weighted = 0;
  for (size_t i = 0; i < hist.size(); ++i) {
    reads += hist[i];
    weighted += static_cast<int64_t>(i) * hist[i];
    if (hist[i] > 0) o.max_staleness = static_cast<int>(i);
  }
  o.mean_staleness = reads ? static_cast<double>(weighted) / reads : 0;
  absl::StatusOr<std::vector<MetricPoint>> points = client.GetMetrics(job.job_id(), 0);
  if (points.ok()) o.curve = LossCurve(*points, window, m.label);
  o.final_loss = o.curve.y.empty() ? 0 : o.curve.y.back();
  return o;
}

int Main(const CliArgs& args) {
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::exit(2);
  };
  auto get_int = [&](const char* name, int lo, int hi) {
    absl::StatusOr<int> v = args.GetInt(name, lo, hi);
    if (!v.ok()) fail(std::string(v.status().message()));
    return *v;
  };
  const int workers = get_int("workers", 1, 64);
  const int servers = get_int("servers", 1, 64);
  const int epochs = get_int("epochs", 1, 1000);
  const int train_limit = get_int("train_limit", 0, 1 << 30);
  const int smooth = get_int("smooth", 1, 1000);
  const int seeds = get_int("seeds", 1, 1000);
  const int first_seed = get_int("first_seed", 1, 1 << 30);
  const int fixed_delay_ms = get_int("transient_delay_ms", 0, 600000);
  absl::StatusOr<std::vector<BenchMode>> modes_or = ParseBenchModes(args.Get("modes"));
  if (!modes_or.ok()) fail(std::string(modes_or.status().message()));
  const std::vector<BenchMode> modes = *modes_or;
  // Sync applies one step per round on the mean of W gradients; SSP and async
  // one step per gradient. --sync_learning_rate=scaled gives sync W x the rate
  // (the linear scaling rule), so both move the weights as far per round.
  const std::string sync_lr_flag = args.Get("sync_learning_rate");
  const float sync_lr = sync_lr_flag == "scaled"
                            ? workers * std::stof(args.Get("learning_rate"))
                            : (sync_lr_flag.empty() ? 0.0f : std::stof(sync_lr_flag));
  const std::string out = args.Get("out");
  const double target_softmax = std::stod(args.Get("target_loss_softmax"));
  const double target_mlp = std::stod(args.Get("target_loss_mlp"));
  const std::vector<std::string> models =
      absl::StrSplit(args.Get("models"), ',', absl::SkipWhitespace());
  const std::vector<std::string> scenarios =
      absl::StrSplit(args.Get("scenarios"), ',', absl::SkipWhitespace());
  for (const std::string& m : models) {
    if (m != "softmax" && m != "mlp") fail(absl::StrCat("unknown model '", m, "': want softmax or mlp"));
  }
  for (const std::string& sc : scenarios) {
    if (sc != "transient" && sc != "persistent" && sc != "none") {
      fail(absl::StrCat("unknown scenario '", sc, "': want transient, persistent or none"));
    }
  }
  if (models.empty() || scenarios.empty()) fail("--models and --scenarios must name at least one");
  const bool have_sync = std::any_of(modes.begin(), modes.end(),
                                     [](const BenchMode& m) { return m.mode == SYNC; });
  for (const std::string& model : models) {
    const double given = model == "mlp" ? target_mlp : target_softmax;
    if (given <= 0 && !have_sync) {
      fail(absl::StrCat("--modes has no sync, so give --target_loss_", model));
    }
  }

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", out.c_str(), ec.message().c_str());
    return 1;
  }
  const std::string load_start = LoadAverages();
  const absl::Time bench_start = absl::Now();
  std::printf("load averages at start: %s\n", load_start.c_str());
  LocalClusterOptions options;
  options.bin_dir = args.Get("bin_dir").empty() ? ExecutableDir() : args.Get("bin_dir");
  options.out_dir = out + "/cluster";
  options.servers = servers;
  options.workers = workers;
  options.log_level = "warn";
  LocalCluster cluster(options);
  if (absl::Status st = cluster.Start(); !st.ok()) {
    std::fprintf(stderr, "cluster: %s\n", st.ToString().c_str());
    return 1;
  }
  SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));

  std::vector<RunOutcome> outcomes;
  std::vector<std::string> delays;  // "softmax: D = 21 ms (...)"
  std::string target_how;
  for (const std::string& model : models) {
    JobSpec base;
    base.set_name(absl::StrCat("bench-", model));
    if (model == "mlp") {
      base.mutable_model()->set_kind(ModelSpec::MLP);
      base.mutable_model()->add_hidden_layers(128);
    } else {
      base.mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
    }
    base.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    base.mutable_optimizer()->set_learning_rate(std::stof(args.Get("learning_rate")));
    base.mutable_optimizer()->set_momentum(std::stof(args.Get("momentum")));
    base.set_batch_size(get_int("batch_size", 1, 4096));
    base.set_epochs(epochs);
    base.set_seed(first_seed);
    base.set_num_workers(workers);
    base.set_num_servers(servers);
    base.set_log_every_steps(5);
    base.mutable_data()->set_path(args.Get("data"));
    base.mutable_data()->set_train_limit(train_limit);
    ApplyJobDefaults(&base);

    int delay_ms = fixed_delay_ms;
    if (delay_ms > 0) {
      delays.push_back(absl::StrCat(model, ": D = ", delay_ms, " ms (given)"));
    } else if (std::find(scenarios.begin(), scenarios.end(), "transient") != scenarios.end()) {
      // Calibration: the mean step of sync without stragglers, timed from the
      // metric points after the first 20 steps (start-up is not a step).
      JobSpec calib = base;
      calib.set_max_steps(200);
      absl::StatusOr<JobInfo> c = RunJob(client, cluster, calib, absl::Minutes(5));
      if (!c.ok() || c->state() != SUCCEEDED) {
        std::fprintf(stderr, "calibration failed: %s\n",
                     c.ok() ? c->error().c_str() : c.status().ToString().c_str());
        return 1;
      }
      absl::StatusOr<std::vector<MetricPoint>> points = client.GetMetrics(c->job_id(), 0);
      absl::StatusOr<double> step_s =
          points.ok() ? MeanStepSeconds(*points, 20) : absl::StatusOr<double>(points.status());
      if (!step_s.ok()) {
        std::fprintf(stderr, "calibration: %s\n", step_s.status().ToString().c_str());
        return 1;
      }
      delay_ms = std::max(1, static_cast<int>(5000 * *step_s + 0.5));
      std::printf("%s: mean sync step %.2f ms without stragglers (steps 21-200); transient pause "
                  "D = %d ms\n", model.c_str(), 1000 * *step_s, delay_ms);
      delays.push_back(absl::StrFormat("%s: D = %d ms = 5 x %.2f ms", model, delay_ms,
                                       1000 * *step_s));
    }

    for (const std::string& scenario : scenarios) {
      for (int seed = first_seed; seed < first_seed + seeds; ++seed) {
        for (const BenchMode& m : modes) {
          JobSpec spec = base;
          spec.set_seed(seed);
          spec.set_mode(m.mode);
          spec.set_staleness(m.staleness);
          spec.set_ssp_cache(m.cache);
          if (m.mode == SYNC && sync_lr > 0) spec.mutable_optimizer()->set_learning_rate(sync_lr);
          if (scenario == "transient") {
            spec.mutable_straggler()->set_transient_probability(0.1);
            spec.mutable_straggler()->set_transient_delay_ms(delay_ms);
          } else if (scenario == "persistent") {
            spec.mutable_straggler()->set_persistent_rank(0);
            spec.mutable_straggler()->set_persistent_factor(2.0f);
          }
          absl::StatusOr<JobInfo> job = RunJob(client, cluster, spec, absl::Minutes(30));
          if (!job.ok()) {
            std::fprintf(stderr, "%s %s seed %d %s: %s\n", model.c_str(), scenario.c_str(), seed,
                         m.label.c_str(), job.status().ToString().c_str());
            return 1;
          }
          RunOutcome o = ToOutcome(client, *job, model, scenario, m, seed, smooth);
          std::printf("%-8s %-10s seed %-3d %-15s %s: train %.1f s, final loss %.4f, test acc "
                      "%.2f%%, staleness mean %.2f max %d, pulls %lld saved %lld [%.0f s in]\n",
                      model.c_str(), scenario.c_str(), seed, m.label.c_str(), o.state.c_str(),
                      o.train_seconds, o.final_loss, 100 * o.test_accuracy, o.mean_staleness,
                      o.max_staleness, static_cast<long long>(o.pulls),
                      static_cast<long long>(o.pulls_saved),
                      absl::ToDoubleSeconds(absl::Now() - bench_start));
          outcomes.push_back(std::move(o));
        }
      }
    }
    // The target: given, or 1.1 x sync's final loss in the first scenario
    // (mean over the seeds).
    double target = model == "mlp" ? target_mlp : target_softmax;
    if (target > 0) {
      absl::StrAppendFormat(&target_how, "%s%s: %.4f (given)", target_how.empty() ? "" : "; ",
                            model, target);
    } else {
      std::vector<double> finals;
      for (const RunOutcome& o : outcomes) {
        if (o.model == model && o.mode == "sync" && o.scenario == scenarios.front()) {
          finals.push_back(o.final_loss);
        }
      }
      target = 1.1 * Summarize(finals).mean;
      absl::StrAppendFormat(&target_how,
                            "%s%s: %.4f = 1.1 x sync's final training loss with %s stragglers, "
                            "mean over the seeds", target_how.empty() ? "" : "; ", model, target,
                            scenarios.front());
    }
    for (RunOutcome& o : outcomes) {
      if (o.model != model) continue;
      o.target = target;
      o.wall_to_target = TimeToTarget(o.curve, target);
      std::printf("%-8s %-10s seed %-3d %-15s: %.1f s to training loss %.4f\n", model.c_str(),
                  o.scenario.c_str(), o.seed, o.mode.c_str(), o.wall_to_target, target);
    }
  }
  cluster.Stop();
  const std::string load_end = LoadAverages();
  std::printf("load averages at end: %s (%.0f s in all)\n", load_end.c_str(),
              absl::ToDoubleSeconds(absl::Now() - bench_start));

  const std::vector<ModeSummary> summary = SummarizeRuns(outcomes);
  std::string md = absl::StrFormat(
      "# Consistency modes under stragglers\n\n%d workers, %d servers on one machine; "
      "Fashion-MNIST (%s training examples), %d epochs, SGD lr %s (sync: %g) momentum %s, batch "
      "%s per worker. Seeds %d-%d, one run per mode and seed (a seed fixes the initial weights, "
      "the data order and the straggler pauses).%s\n\n"
      "Each worker reports its mean training loss every 5 steps; the training loss at time t is "
      "the mean of the latest %d such reports (each averaged over the workers), i.e. of the last "
      "%d steps. Time to target: the first time it is at or below the model's target loss (%s). "
      "Speed-up: per seed, sync's time to the target / this mode's with the same seed. "
      "acc − sync: per seed, this mode's test accuracy minus sync's with the same seed, in "
      "points. With several seeds a cell is mean ± sample sd over the seeds; (k/n): only k of "
      "n seeds reached the target. Train time: first worker start to last worker finish. "
      "Staleness: observed per read (see README), over all reads of all workers; mean of the "
      "runs' means / max over runs. Plots: seed %d.\n\n"
      "Load averages (1/5/15 min) at the start: %s; at the end: %s; %.0f s in all.\n\n",
      workers, servers, train_limit ? absl::StrCat(train_limit) : std::string("60000"), epochs,
      args.Get("learning_rate"), sync_lr > 0 ? sync_lr : std::stof(args.Get("learning_rate")),
      args.Get("momentum"), args.Get("batch_size"), first_seed, first_seed + seeds - 1,
      delays.empty() ? std::string()
                     : absl::StrCat(" Transient stragglers: p = 0.1, ", absl::StrJoin(delays, "; "),
                                    " (mean sync step without stragglers)."),
      smooth, 5 * smooth, target_how, first_seed, load_start, load_end,
      absl::ToDoubleSeconds(absl::Now() - bench_start));
  md += SummaryMarkdown(summary);
  for (const std::string& model : models) {
    std::vector<Panel> panels;
    for (const std::string& scenario : scenarios) {
      Panel p{absl::StrCat(scenario, " stragglers"), "wall time (s)", "training loss", {}, {}};
      for (const RunOutcome& o : outcomes) {
        if (o.model == model && o.scenario == scenario && o.seed == first_seed) {
          p.series.push_back(o.curve);
        }
      }
      panels.push_back(std::move(p));
    }
    const std::string svg = RenderSvg(
        absl::StrCat("Training loss against wall time: ", model, ", ", workers, " workers, ",
                     servers, " servers, seed ", first_seed),
        panels);
    if (absl::Status st = WriteFileAtomically(absl::StrCat(out, "/consistency_", model, ".svg"), svg);
        !st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    absl::StrAppend(&md, "\n![", model, "](consistency_", model, ".svg)\n");
  }
  for (const auto& [name, text] :
       std::vector<std::pair<std::string, std::string>>{{"consistency.csv", RunsCsv(outcomes)},
                                                        {"consistency_summary.csv", SummaryCsv(summary)},
                                                        {"consistency.md", md}}) {
    if (absl::Status st = WriteFileAtomically(out + "/" + name, text); !st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  std::printf("wrote %s/consistency.md, consistency.csv, consistency_summary.csv and "
              "consistency_*.svg\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace tessera::tools

int main(int argc, char** argv) {
  using namespace tessera::tools;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::vector<FlagSpec> flags = {
      {"out", "tessera-bench-consistency", "output folder"},
      {"workers", "4", "workers"},
      {"servers", "2", "parameter servers"},
      {"models", "softmax,mlp", "models to run: softmax and/or mlp"},
      {"scenarios", "transient,persistent",
       "straggler scenarios: transient, persistent and/or none; the first one sets the target"},
      {"modes", "sync,ssp1,ssp3,ssp10,async,ssp3_cache",
       "modes to run: sync, async, sspN (staleness N), sspN_cache (with the SSP cache)"},
      {"seeds", "1", "runs per mode, with job seeds first_seed, first_seed + 1, ..."},
      {"first_seed", "11", "job seed of the first run of each mode"},
      {"transient_delay_ms", "0", "transient pause D in ms; 0 = 5 x the mean sync step of a "
                                  "calibration run"},
      {"epochs", "2", "epochs per run"},
      {"train_limit", "0", "training examples used (0 = all 60,000)"},
      {"batch_size", "32", "per-worker batch size"},
      {"learning_rate", "0.05", "SGD learning rate"},
      {"momentum", "0", "SGD momentum (applied per push on the servers)"},
      {"sync_learning_rate", "", "sync's learning rate: empty = --learning_rate, 'scaled' = "
                                 "workers x --learning_rate, or a number"},
      {"smooth", "32", "logged steps (each averaged over the workers) averaged into one point "
                       "of the loss curve"},
      {"target_loss_softmax", "0", "training loss the time-to-target is measured at; 0 = 1.1 x "
                                   "sync's final loss in the first scenario, mean over seeds"},
      {"target_loss_mlp", "0", "the same for the MLP"},
      {"data", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX folder"},
      {"bin_dir", "", "folder with the tessera-* binaries (default: next to this program)"}};
  absl::StatusOr<CliArgs> args =
      ParseCliArgs(std::vector<std::string>(argv + 1, argv + argc), flags);
  if (!args.ok() || args->help) {
    if (!args.ok()) std::fprintf(stderr, "%s\n\n", std::string(args.status().message()).c_str());
    std::printf("Usage: tessera bench consistency [flags]\n\nFlags:\n%s", FlagsHelp(flags).c_str());
    return args.ok() ? 0 : 2;
  }
  return Main(*args);
}
