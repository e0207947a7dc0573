// tessera-bench-consistency (also `tessera bench consistency`): sync, SSP and
// async on a local cluster with injected stragglers. For each model
// (softmax regression, MLP) and straggler scenario (transient: each step with
// probability p a worker pauses D = 5x the mean step; persistent: rank 0 runs
// 2x slower) it runs sync, ssp s = 1, 3, 10 and async on Fashion-MNIST, and
// records the wall time to a fixed training loss, the final test accuracy and
// the observed staleness. Writes consistency.md, consistency.csv and one SVG
// per model (training loss against wall time, a panel per scenario) to --out.
//
// Training loss at time t is the mean of the latest num_workers x --smooth
// progress points reported before t (each the mean loss of one worker's last
// log_every_steps batches), so it follows all workers, not one.

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
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"
#include "tools/svg_plot.h"

namespace tessera::tools {
namespace {

struct ModeRun {
  std::string label;
  ConsistencyMode mode;
  int staleness;
  bool cache;
};

struct Outcome {
  std::string model, scenario, mode;
  double target = 0;           // training loss
  double wall_to_target = -1;  // seconds; -1: never reached
  double train_seconds = 0;
  double final_loss = 0;
  double test_accuracy = 0;
  double mean_staleness = 0;
  int max_staleness = 0;
  int64_t pulls = 0, pulls_saved = 0;
  std::string state;
  Series curve;
};

std::string SelfDir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

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

// The smoothed loss curve (see the file comment) of a finished job.
Series LossCurve(const std::vector<MetricPoint>& points_in, int window, const std::string& label) {
  std::vector<MetricPoint> points = points_in;
  std::sort(points.begin(), points.end(), [](const MetricPoint& a, const MetricPoint& b) {
    return a.wall_seconds() < b.wall_seconds();
  });
  Series s{label, {}, {}};
  for (size_t i = static_cast<size_t>(window) - 1; i < points.size(); ++i) {
    double sum = 0;
    for (size_t k = i + 1 - window; k <= i; ++k) sum += points[k].loss();
    s.x.push_back(points[i].wall_seconds());
    s.y.push_back(sum / window);
  }
  return s;
}

int Main(const CliArgs& args) {
  auto get_int = [&](const char* name, int lo, int hi) {
    absl::StatusOr<int> v = args.GetInt(name, lo, hi);
    if (!v.ok()) {
      std::fprintf(stderr, "%s\n", std::string(v.status().message()).c_str());
      std::exit(2);
    }
    return *v;
  };
  const int workers = get_int("workers", 1, 64);
  const int servers = get_int("servers", 1, 64);
  const int epochs = get_int("epochs", 1, 1000);
  const int train_limit = get_int("train_limit", 0, 1 << 30);
  const int smooth = get_int("smooth", 1, 1000);
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
  const std::vector<std::string> models = absl::StrSplit(args.Get("models"), ',');
  const std::vector<std::string> scenarios = absl::StrSplit(args.Get("scenarios"), ',');

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", out.c_str(), ec.message().c_str());
    return 1;
  }
  LocalClusterOptions options;
  options.bin_dir = args.Get("bin_dir").empty() ? SelfDir() : args.Get("bin_dir");
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

  const std::vector<ModeRun> modes = {{"sync", SYNC, 0, false},
                                      {"ssp s=1", SSP, 1, false},
                                      {"ssp s=3", SSP, 3, false},
                                      {"ssp s=10", SSP, 10, false},
                                      {"async", ASYNC, 0, false},
                                      {"ssp s=3 +cache", SSP, 3, true}};
  std::vector<Outcome> outcomes;
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
    base.set_seed(11);
    base.set_num_workers(workers);
    base.set_num_servers(servers);
    base.set_log_every_steps(5);
    base.mutable_data()->set_path(args.Get("data"));
    base.mutable_data()->set_train_limit(train_limit);
    ApplyJobDefaults(&base);

    // Calibration: the mean step of sync without stragglers.
    JobSpec calib = base;
    calib.set_max_steps(60);
    absl::StatusOr<JobInfo> c = RunJob(client, cluster, calib, absl::Minutes(5));
    if (!c.ok() || c->state() != SUCCEEDED) {
      std::fprintf(stderr, "calibration failed: %s\n",
                   c.ok() ? c->error().c_str() : c.status().ToString().c_str());
      return 1;
    }
    const double mean_step_ms = 1000 * c->train_seconds() / 60;
    const int delay_ms = std::max(1, static_cast<int>(5 * mean_step_ms + 0.5));
    std::printf("%s: mean sync step %.1f ms without stragglers; transient pause D = %d ms\n",
                model.c_str(), mean_step_ms, delay_ms);

    for (const std::string& scenario : scenarios) {
      for (const ModeRun& m : modes) {
        JobSpec spec = base;
        spec.set_mode(m.mode);
        spec.set_staleness(m.staleness);
        spec.set_ssp_cache(m.cache);
        if (m.mode == SYNC && sync_lr > 0) spec.mutable_optimizer()->set_learning_rate(sync_lr);
        if (scenario == "transient") {
          spec.mutable_straggler()->set_transient_probability(0.1);
          spec.mutable_straggler()->set_transient_delay_ms(delay_ms);
        } else {
          spec.mutable_straggler()->set_persistent_rank(0);
          spec.mutable_straggler()->set_persistent_factor(2.0f);
        }
        absl::StatusOr<JobInfo> job = RunJob(client, cluster, spec, absl::Minutes(10));
        if (!job.ok()) {
          std::fprintf(stderr, "%s %s %s: %s\n", model.c_str(), scenario.c_str(),
                       m.label.c_str(), job.status().ToString().c_str());
          return 1;
        }
        Outcome o;
        o.model = model;
        o.scenario = scenario;
        o.mode = m.label;
        o.state = JobStateName(job->state());
        o.train_seconds = job->train_seconds();
        o.test_accuracy = job->test_accuracy();
        std::vector<int64_t> hist;
        for (const WorkerProgress& w : job->workers()) {
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
        absl::StatusOr<std::vector<MetricPoint>> points = client.GetMetrics(job->job_id(), 0);
        if (points.ok()) o.curve = LossCurve(*points, workers * smooth, m.label);
        o.final_loss = o.curve.y.empty() ? 0 : o.curve.y.back();
        std::printf("%-8s %-10s %-15s %s: train %.1f s, final loss %.4f, test acc %.2f%%, "
                    "staleness mean %.2f max %d, pulls %lld saved %lld\n",
                    model.c_str(), scenario.c_str(), m.label.c_str(), o.state.c_str(),
                    o.train_seconds, o.final_loss, 100 * o.test_accuracy, o.mean_staleness,
                    o.max_staleness, static_cast<long long>(o.pulls),
                    static_cast<long long>(o.pulls_saved));
        outcomes.push_back(std::move(o));
      }
    }
    // The target: given, or 1.1 x the final loss of sync under transient stragglers.
    double target = model == "mlp" ? target_mlp : target_softmax;
    if (target <= 0) {
      for (const Outcome& o : outcomes) {
        if (o.model == model && o.mode == "sync" && o.scenario == scenarios.front()) {
          target = 1.1 * o.final_loss;
        }
      }
    }
    for (Outcome& o : outcomes) {
      if (o.model != model) continue;
      o.target = target;
      for (size_t i = 0; i < o.curve.x.size(); ++i) {
        if (o.curve.y[i] <= target) {
          o.wall_to_target = o.curve.x[i];
          break;
        }
      }
      std::printf("%-8s %-10s %-15s: %.1f s to training loss %.4f\n", model.c_str(),
                  o.scenario.c_str(), o.mode.c_str(), o.wall_to_target, target);
    }
  }
  cluster.Stop();

  std::string csv =
      "model,scenario,mode,state,target_loss,seconds_to_target_loss,train_seconds,final_train_loss,"
      "test_accuracy,mean_staleness,max_staleness,pulls,pulls_saved\n";
  std::string md = absl::StrFormat(
      "# Consistency modes under stragglers\n\n%d workers, %d servers on one machine; "
      "Fashion-MNIST (%s training examples), %d epochs, SGD lr %s (sync: %g) momentum %s, batch "
      "%s per worker; each worker reports its mean training loss every 5 steps. Time to target: the "
      "first time the training loss (mean of the latest %d reports, all workers) is at or "
      "below the model's target loss; speed-up = sync's time to the target / this mode's. "
      "Train time: the job's, first worker start to last worker finish. Staleness: observed "
      "per read (see README), over all reads of all workers.\n\n"
      "| model | stragglers | mode | target loss | time to target (s) | speed-up vs sync | train time (s) | "
      "final train loss | test acc | staleness mean / max | pulls (saved by cache) |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n",
      workers, servers, train_limit ? absl::StrCat(train_limit) : std::string("60000"), epochs,
      args.Get("learning_rate"), sync_lr > 0 ? sync_lr : std::stof(args.Get("learning_rate")),
      args.Get("momentum"), args.Get("batch_size"), workers * smooth);
  for (const Outcome& o : outcomes) {
    double sync_t = -1;
    for (const Outcome& p : outcomes) {
      if (p.model == o.model && p.scenario == o.scenario && p.mode == "sync") sync_t = p.wall_to_target;
    }
    const std::string speedup = o.wall_to_target > 0 && sync_t > 0
                                    ? absl::StrFormat("%.2fx", sync_t / o.wall_to_target)
                                    : std::string("-");
    const std::string t = o.wall_to_target > 0 ? absl::StrFormat("%.1f", o.wall_to_target)
                                               : std::string("not reached");
    absl::StrAppendFormat(&csv, "%s,%s,%s,%s,%.4f,%.2f,%.2f,%.5f,%.4f,%.3f,%d,%d,%d\n", o.model,
                          o.scenario, o.mode, o.state, o.target, o.wall_to_target, o.train_seconds,
                          o.final_loss, o.test_accuracy, o.mean_staleness, o.max_staleness,
                          o.pulls, o.pulls_saved);
    absl::StrAppendFormat(&md, "| %s | %s | %s | %.3f | %s | %s | %.1f | %.4f | %.2f%% | %.2f / %d | %d (%d) |\n",
                          o.model, o.scenario, o.mode, o.target, t, speedup, o.train_seconds, o.final_loss,
                          100 * o.test_accuracy, o.mean_staleness, o.max_staleness, o.pulls,
                          o.pulls_saved);
  }
  for (const std::string& model : models) {
    std::vector<Panel> panels;
    for (const std::string& scenario : scenarios) {
      Panel p{absl::StrCat(scenario, " stragglers"), "wall time (s)", "training loss", {}};
      for (const Outcome& o : outcomes) {
        if (o.model == model && o.scenario == scenario) p.series.push_back(o.curve);
      }
      panels.push_back(std::move(p));
    }
    const std::string svg = RenderSvg(
        absl::StrCat("Training loss against wall time: ", model, ", ", workers, " workers, ",
                     servers, " servers"),
        panels);
    if (absl::Status st = WriteFileAtomically(absl::StrCat(out, "/consistency_", model, ".svg"), svg);
        !st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    absl::StrAppend(&md, "\n![", model, "](consistency_", model, ".svg)\n");
  }
  if (absl::Status st = WriteFileAtomically(out + "/consistency.csv", csv); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  if (absl::Status st = WriteFileAtomically(out + "/consistency.md", md); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s/consistency.md, consistency.csv and consistency_*.svg\n", out.c_str());
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
      {"scenarios", "transient,persistent", "straggler scenarios: transient and/or persistent"},
      {"epochs", "2", "epochs per run"},
      {"train_limit", "0", "training examples used (0 = all 60,000)"},
      {"batch_size", "32", "per-worker batch size"},
      {"learning_rate", "0.05", "SGD learning rate"},
      {"momentum", "0", "SGD momentum (applied per push on the servers)"},
      {"sync_learning_rate", "", "sync's learning rate: empty = --learning_rate, 'scaled' = "
                                 "workers x --learning_rate, or a number"},
      {"smooth", "8", "reports per worker averaged into one point of the loss curve"},
      {"target_loss_softmax", "0", "training loss the time-to-target is measured at; 0 = 1.1 x "
                                   "sync's final loss in the first scenario"},
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
