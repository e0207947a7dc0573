// tessera: the command-line interface. `tessera --help` lists the commands.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "common/file_util.h"
#include "tools/cli_args.h"
#include "tools/job_report.h"
#include "tools/job_yaml.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"

namespace tessera::tools {
namespace {

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted = true; }

struct Command {
  std::string name;
  std::string usage;    // after "tessera NAME"
  std::string summary;
  std::vector<FlagSpec> flags;
  std::function<int(const CliArgs&)> run;
};

const FlagSpec kSchedulerFlag{"scheduler", "127.0.0.1:7070", "scheduler address host:port"};
const FlagSpec kTimeoutFlag{"timeout_s", "10", "deadline of each call to the scheduler, seconds"};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tessera: %s\n", std::string(status.message()).c_str());
  return 1;
}

SchedulerClient ClientFor(const CliArgs& args) {
  int timeout = 10;
  if (absl::StatusOr<int> t = args.GetInt("timeout_s", 1, 3600); t.ok()) timeout = *t;
  return SchedulerClient(args.Get("scheduler"), absl::Seconds(timeout));
}

bool Terminal(JobState s) { return s == SUCCEEDED || s == FAILED || s == CANCELLED; }

// Follows a job until it ends, printing progress. Returns the final JobInfo.
// `cluster` (may be null) is checked for dead children on every poll.
absl::StatusOr<JobInfo> WatchJob(SchedulerClient& client, const std::string& job_id,
                                 LocalCluster* cluster) {
  const bool tty = isatty(STDOUT_FILENO);
  std::string last_line;
  absl::Time last_print = absl::InfinitePast();
  while (true) {
    if (g_interrupted) {
      std::printf("\ninterrupted: cancelling %s\n", job_id.c_str());
      (void)client.Cancel(job_id);
      return absl::CancelledError("interrupted");
    }
    if (cluster != nullptr) {
      if (absl::Status st = cluster->CheckHealth(); !st.ok()) {
        (void)client.Cancel(job_id);
        return st;
      }
    }
    TESSERA_ASSIGN_OR_RETURN(JobInfo job, client.GetJob(job_id));
    if (Terminal(job.state())) {
      if (tty && !last_line.empty()) std::printf("\n");
      return job;
    }
    if (job.state() == RUNNING && job.workers_size() > 0) {
      const std::string line = ProgressLine(job, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
      const absl::Time now = absl::Now();
      if (tty) {
        std::printf("\r\033[K%s", line.c_str());
        std::fflush(stdout);
        last_line = line;
      } else if (now - last_print >= absl::Seconds(3) && line != last_line) {
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        last_line = line;
        last_print = now;
      }
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

// Writes metrics.csv and training.svg for a finished job into `out_dir`.
void WriteJobMetrics(SchedulerClient& client, const JobInfo& job, const std::string& out_dir) {
  absl::StatusOr<std::vector<MetricPoint>> points = client.GetMetrics(job.job_id(), 0);
  if (!points.ok()) {
    std::fprintf(stderr, "tessera: could not fetch metrics: %s\n",
                 std::string(points.status().message()).c_str());
    return;
  }
  if (points->empty()) return;  // the job never reported a step
  const std::string csv = out_dir + "/metrics.csv", svg = out_dir + "/training.svg";
  if (absl::Status st = WriteMetrics(job, *points, csv, svg); !st.ok()) {
    std::fprintf(stderr, "tessera: %s\n", std::string(st.message()).c_str());
    return;
  }
  std::printf("metrics: %s (%zu points)\nplot:    %s\n", csv.c_str(), points->size(), svg.c_str());
}

// The main job: an MLP on Fashion-MNIST, two servers, two workers, sync.
JobSpec DefaultJob() {
  JobSpec spec;
  spec.set_name("fashion-mlp");
  spec.mutable_model()->set_kind(ModelSpec::MLP);
  spec.mutable_model()->add_hidden_layers(256);
  spec.mutable_model()->add_hidden_layers(128);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.001f);
  spec.set_batch_size(64);
  spec.set_epochs(12);
  spec.set_mode(SYNC);
  spec.set_seed(42);
  return spec;
}

// Applies `tessera local`'s overriding flags to `spec`.
absl::Status ApplyLocalOverrides(const CliArgs& args, JobSpec* spec) {
  if (const std::string& m = args.Get("model"); !m.empty()) {
    if (m == "mlp") {
      spec->mutable_model()->set_kind(ModelSpec::MLP);
      if (spec->model().hidden_layers_size() == 0) {
        spec->mutable_model()->add_hidden_layers(256);
        spec->mutable_model()->add_hidden_layers(128);
      }
    } else if (m == "softmax_regression") {
      spec->mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
      spec->mutable_model()->clear_hidden_layers();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--model=", m, ": expected mlp or softmax_regression"));
    }
  }
  if (const std::string& h = args.Get("hidden_layers"); !h.empty()) {
    spec->mutable_model()->clear_hidden_layers();
    for (absl::string_view part : absl::StrSplit(h, ',')) {
      int w = 0;
      if (!absl::SimpleAtoi(part, &w)) {
        return absl::InvalidArgumentError(absl::StrCat("--hidden_layers=", h, ": expected e.g. 256,128"));
      }
      spec->mutable_model()->add_hidden_layers(w);
    }
  }
  if (const std::string& mode = args.Get("mode"); !mode.empty()) {
    if (mode == "sync") spec->set_mode(SYNC);
    else if (mode == "async") spec->set_mode(ASYNC);
    else if (mode == "ssp") spec->set_mode(SSP);
    else return absl::InvalidArgumentError(absl::StrCat("--mode=", mode, ": expected sync, async or ssp"));
  }
  struct IntOverride {
    const char* flag;
    int lo, hi;
    std::function<void(int)> set;
  };
  const IntOverride ints[] = {
      {"epochs", 1, 100000, [&](int v) { spec->set_epochs(v); }},
      {"batch_size", 1, 1 << 20, [&](int v) { spec->set_batch_size(v); }},
      {"max_steps", 0, INT_MAX, [&](int v) { spec->set_max_steps(v); }},
      {"staleness", 0, 1000000, [&](int v) { spec->set_staleness(v); }},
      {"train_limit", 0, INT_MAX, [&](int v) { spec->mutable_data()->set_train_limit(v); }},
      {"test_limit", 0, INT_MAX, [&](int v) { spec->mutable_data()->set_test_limit(v); }},
      {"seed", 0, INT_MAX, [&](int v) { spec->set_seed(v); }},
  };
  for (const IntOverride& o : ints) {
    if (args.Get(o.flag).empty()) continue;
    TESSERA_ASSIGN_OR_RETURN(int v, args.GetInt(o.flag, o.lo, o.hi));
    o.set(v);
  }
  if (const std::string& lr = args.Get("learning_rate"); !lr.empty()) {
    float v = 0;
    if (!absl::SimpleAtof(lr, &v)) return absl::InvalidArgumentError("--learning_rate: expected a number");
    spec->mutable_optimizer()->set_learning_rate(v);
  }
  if (const std::string& d = args.Get("data"); !d.empty()) spec->mutable_data()->set_path(d);
  return absl::OkStatus();
}

int RunLocal(const CliArgs& args) {
  if (args.positional.size() > 1) return Fail(absl::InvalidArgumentError("local takes at most one JOB.yaml"));
  JobSpec spec = DefaultJob();
  if (!args.positional.empty()) {
    absl::StatusOr<JobSpec> loaded = LoadJobYaml(args.positional[0]);
    if (!loaded.ok()) return Fail(loaded.status());
    spec = *loaded;
  }
  if (absl::Status st = ApplyLocalOverrides(args, &spec); !st.ok()) return Fail(st);
  // --servers / --workers, else the job's num_servers / num_workers, else 2.
  auto count = [&](const std::string& flag, int from_job) -> absl::StatusOr<int> {
    if (!args.Get(flag).empty()) return args.GetInt(flag, 1, 64);
    if (from_job == 0) return 2;
    if (from_job < 1 || from_job > 64) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the job asks for ", from_job, " ", flag, "; tessera local starts 1..64"));
    }
    return from_job;
  };
  absl::StatusOr<int> servers = count("servers", spec.num_servers());
  absl::StatusOr<int> workers = count("workers", spec.num_workers());
  if (!servers.ok()) return Fail(servers.status());
  if (!workers.ok()) return Fail(workers.status());
  spec.set_num_servers(*servers);
  spec.set_num_workers(*workers);
  ApplyJobDefaults(&spec);
  if (absl::Status st = ValidateJobSpec(spec); !st.ok()) return Fail(st);

  LocalClusterOptions options;
  options.bin_dir = args.Get("bin_dir").empty() ? ExecutableDir() : args.Get("bin_dir");
  options.out_dir = args.Get("out");
  options.servers = *servers;
  options.workers = *workers;
  options.log_level = args.Get("log_level");
  options.worker_device = args.Get("device");
  LocalCluster cluster(options);
  std::printf("starting a local cluster: 1 scheduler, %d servers, %d workers (logs in %s)\n",
              *servers, *workers, cluster.logs_dir().c_str());
  if (absl::Status st = cluster.Start(); !st.ok()) return Fail(st);
  SchedulerClient client(cluster.scheduler_address(), absl::Seconds(10));
  absl::StatusOr<std::string> job_id = client.Submit(spec);
  if (!job_id.ok()) return Fail(job_id.status());
  std::printf("scheduler %s; submitted %s \"%s\"\n", cluster.scheduler_address().c_str(),
              job_id->c_str(), spec.name().c_str());
  absl::StatusOr<JobInfo> job = WatchJob(client, *job_id, &cluster);
  if (!job.ok()) {
    cluster.Stop();
    return Fail(job.status());
  }
  std::printf("%s\n", ResultLine(*job).c_str());
  WriteJobMetrics(client, *job, options.out_dir);
  cluster.Stop();
  return job->state() == SUCCEEDED ? 0 : 1;
}

int RunSubmit(const CliArgs& args) {
  if (args.positional.size() != 1) return Fail(absl::InvalidArgumentError("submit needs one JOB.yaml"));
  absl::StatusOr<JobSpec> spec = LoadJobYaml(args.positional[0]);
  if (!spec.ok()) return Fail(spec.status());
  SchedulerClient client = ClientFor(args);
  absl::StatusOr<std::string> job_id = client.Submit(*spec);
  if (!job_id.ok()) return Fail(job_id.status());
  std::printf("%s\n", job_id->c_str());
  if (!args.GetBool("wait")) return 0;
  absl::StatusOr<JobInfo> job = WatchJob(client, *job_id, nullptr);
  if (!job.ok()) return Fail(job.status());
  std::printf("%s\n", ResultLine(*job).c_str());
  return job->state() == SUCCEEDED ? 0 : 1;
}

int RunStatus(const CliArgs& args) {
  if (args.positional.size() != 1) return Fail(absl::InvalidArgumentError("status needs one JOB_ID"));
  SchedulerClient client = ClientFor(args);
  absl::StatusOr<JobInfo> job = client.GetJob(args.positional[0]);
  if (!job.ok()) return Fail(job.status());
  std::printf("%s", DescribeJob(*job).c_str());
  if (!args.Get("out").empty()) WriteJobMetrics(client, *job, args.Get("out"));
  return 0;
}

int RunList(const CliArgs& args) {
  if (!args.positional.empty()) return Fail(absl::InvalidArgumentError("list takes no arguments"));
  SchedulerClient client = ClientFor(args);
  absl::StatusOr<std::vector<JobInfo>> jobs = client.ListJobs();
  if (!jobs.ok()) return Fail(jobs.status());
  std::printf("%-10s %-20s %-10s %-8s %s\n", "JOB", "NAME", "STATE", "MODE", "RESULT");
  for (const JobInfo& j : *jobs) {
    std::string result;
    if (j.state() == SUCCEEDED) result = absl::StrFormat("test accuracy %.2f%%", 100 * j.test_accuracy());
    if (j.state() == FAILED) result = j.error();
    std::printf("%-10s %-20s %-10s %-8s %s\n", j.job_id().c_str(), j.name().c_str(),
                JobStateName(j.state()).c_str(), ModeName(j.spec().mode()).c_str(), result.c_str());
  }
  return 0;
}

int RunCancel(const CliArgs& args) {
  if (args.positional.size() != 1) return Fail(absl::InvalidArgumentError("cancel needs one JOB_ID"));
  SchedulerClient client = ClientFor(args);
  absl::StatusOr<JobState> state = client.Cancel(args.positional[0]);
  if (!state.ok()) return Fail(state.status());
  std::printf("%s %s\n", args.positional[0].c_str(), JobStateName(*state).c_str());
  return 0;
}

int RunNodes(const CliArgs& args) {
  if (!args.positional.empty()) return Fail(absl::InvalidArgumentError("nodes takes no arguments"));
  SchedulerClient client = ClientFor(args);
  absl::StatusOr<std::vector<NodeInfo>> nodes = client.ListNodes();
  if (!nodes.ok()) return Fail(nodes.status());
  std::printf("%-10s %-14s %-7s %-22s %-6s %s\n", "ID", "NAME", "ROLE", "ADDRESS", "ALIVE", "TASK");
  for (const NodeInfo& n : *nodes) {
    const std::string task = n.job_id().empty() ? "-" : absl::StrCat(n.job_id(), " rank ", n.rank());
    std::printf("%-10s %-14s %-7s %-22s %-6s %s\n", n.node_id().c_str(), n.name().c_str(),
                n.role() == SERVER ? "server" : "worker", n.address().empty() ? "-" : n.address().c_str(),
                n.alive() ? "yes" : "no", task.c_str());
  }
  return 0;
}

std::vector<Command> Commands() {
  return {
      {"local", "[JOB.yaml] [flags]",
       "Start a scheduler, servers and workers on 127.0.0.1, run a job (by default the main job: an "
       "MLP on Fashion-MNIST), show progress, write metrics.csv and training.svg, stop everything.",
       {{"servers", "", "parameter servers to start (default: the job's num_servers, else 2)"},
        {"workers", "", "workers to start (default: the job's num_workers, else 2)"},
        {"out", "tessera-out", "output folder: logs/, metrics.csv, training.svg"},
        {"model", "", "override: mlp or softmax_regression"},
        {"hidden_layers", "", "override: MLP hidden widths, e.g. 256,128"},
        {"mode", "", "override: sync, async or ssp"},
        {"staleness", "", "override: SSP staleness"},
        {"epochs", "", "override: epochs"},
        {"batch_size", "", "override: per-worker batch size"},
        {"learning_rate", "", "override: learning rate"},
        {"max_steps", "", "override: stop after this many steps per worker"},
        {"train_limit", "", "override: use the first N training examples"},
        {"test_limit", "", "override: evaluate on the first N test examples"},
        {"seed", "", "override: seed"},
        {"data", "", "override: data folder (IDX files)"},
        {"log_level", "warn", "log level of the started processes"},
        {"device", "auto", "workers' --device: auto, cpu, cuda or cuda:N"},
        {"bin_dir", "", "folder with the tessera-* binaries (default: next to tessera)"}},
       RunLocal},
      {"submit", "JOB.yaml [--wait]", "Submit a job to a running scheduler; prints its id.",
       {kSchedulerFlag, kTimeoutFlag, {"wait", "", "follow the job until it ends; exit 0 only if it succeeds", true}},
       RunSubmit},
      {"status", "JOB_ID", "Show a job's state, progress per worker and result.",
       {kSchedulerFlag, kTimeoutFlag, {"out", "", "also write metrics.csv and training.svg into this folder"}},
       RunStatus},
      {"list", "", "List every job the scheduler knows.", {kSchedulerFlag, kTimeoutFlag}, RunList},
      {"cancel", "JOB_ID", "Cancel a pending or running job.", {kSchedulerFlag, kTimeoutFlag}, RunCancel},
      {"nodes", "", "List the registered servers and workers.", {kSchedulerFlag, kTimeoutFlag}, RunNodes},
  };
}

void PrintUsage(const std::vector<Command>& commands) {
  std::printf("tessera: a parameter-server training system.\n\nUsage: tessera COMMAND [args] [--flags]\n\nCommands:\n");
  for (const Command& c : commands) std::printf("  %-8s %s\n", c.name.c_str(), c.summary.c_str());
  std::printf("  %-8s %s\n", "bench",
              "`tessera bench consistency`: sync vs SSP vs async under injected stragglers "
              "(4 workers, 2 servers); writes a table and loss-vs-wall-time plots.");
  std::printf("  %-8s %s\n", "",
              "`tessera bench pushpull`: push/pull goodput, p50/p99 latency and CPU s/GB by "
              "tensor size, against raw TCP loopback.");
  std::printf("  %-8s %s\n", "",
              "`tessera bench kernels`: CUDA kernels' GB/s and TFLOP/s beside a device copy and "
              "a large cuBLAS GEMM (needs a GPU).");
  std::printf("\n`tessera COMMAND --help` describes a command and its flags.\n");
}

void PrintCommandHelp(const Command& c) {
  std::printf("Usage: tessera %s %s\n\n%s\n\nFlags:\n%s", c.name.c_str(), c.usage.c_str(),
              c.summary.c_str(), FlagsHelp(c.flags).c_str());
}

}  // namespace
}  // namespace tessera::tools

int main(int argc, char** argv) {
  using namespace tessera::tools;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  struct sigaction sa = {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const std::vector<Command> commands = Commands();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    PrintUsage(commands);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  if (name == "bench") {
    // Benchmarks are programs of their own next to this one.
    const std::string which = argc < 3 ? "" : argv[2];
    if (which != "consistency" && which != "pushpull" && which != "kernels") {
      std::fprintf(stderr,
                   "Usage: tessera bench consistency|pushpull|kernels [flags] (--help for the "
                   "flags)\n");
      return 2;
    }
    const std::string program = tessera::ExecutableDir() + "/tessera-bench-" + which;
    std::vector<char*> args = {const_cast<char*>(program.c_str())};
    for (int i = 3; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    execv(program.c_str(), args.data());
    std::fprintf(stderr, "tessera: cannot run %s\n", program.c_str());
    return 1;
  }
  for (const Command& c : commands) {
    if (c.name != name) continue;
    absl::StatusOr<CliArgs> args = ParseCliArgs(std::vector<std::string>(argv + 2, argv + argc), c.flags);
    if (!args.ok()) {
      std::fprintf(stderr, "tessera %s: %s\n\n", name.c_str(), std::string(args.status().message()).c_str());
      PrintCommandHelp(c);
      return 2;
    }
    if (args->help) {
      PrintCommandHelp(c);
      return 0;
    }
    return c.run(*args);
  }
  std::fprintf(stderr, "tessera: unknown command '%s'\n\n", name.c_str());
  PrintUsage(commands);
  return 2;
}
