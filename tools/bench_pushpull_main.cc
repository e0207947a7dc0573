// tessera-bench-pushpull (also `tessera bench pushpull`): push/pull goodput,
// latency and CPU cost of the parameter-server data path, side by side with a
// raw TCP loopback baseline measured in the same run.
//
// It starts --servers in-process ParameterServers on 127.0.0.1, and for each
// size creates an ASYNC job (pushes apply at once, pulls never wait) holding
// that many bytes of float32 parameters: one tensor, or --tensors of equal
// size, placed on the servers by the scheduler's planner as a job's would be
// (a tensor of 64 KiB or more is split evenly over them). --workers threads,
// each with its own GrpcParameterClient, then run push, pull or push+pull of
// all of it. For each (mode, size) it reports:
//   goodput   tensor payload bytes moved / wall time, summed over workers
//             (GB = 1e9 bytes; push+pull moves the tensor twice per op),
//   p50, p99  per-operation latency over all workers' operations: how long
//             the caller waits. From 8 MiB on the client keeps up to two
//             pushes in flight (PsClientOptions::pushes_in_flight and
//             overlapped_push_bytes, flags of the same names), so a push
//             returns once it is written out and the push before it is
//             answered; each worker's last push is waited for inside the
//             timed run. A pull waits for the push before it, so push+pull
//             keeps none in flight,
//   CPU s/GB  getrusage(RUSAGE_SELF) user+sys delta / GB moved; servers run
//             in this process, so this counts both sides of the wire,
//   % of TCP  goodput / the raw TCP loopback goodput (one sender thread, one
//             receiver thread, 1 MiB write()s) measured right before the
//             cell, so a load that comes and goes on a shared machine moves
//             both figures alike (the run also opens with a longer one),
//   TCP GB/s  that adjacent baseline.
// --repeat=N runs every cell N times, each with its own baseline, and
// reports the repetition with the median % of TCP.
// --baseline=SxW runs each repetition on a second topology as well, right
// before or after (alternating), and adds the median ratio of the two
// goodputs: scaling measured side by side (e.g. --servers=2 --workers=2
// --baseline=1x1).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/job_spec.h"
#include "common/memory.h"
#include "common/range.h"
#include "common/rpc/grpc_status.h"
#include "common/status_macros.h"
#include "proto/parameter_service.grpc.pb.h"
#include "scheduler/planner.h"
#include "server/rpc/parameter_server.h"
#include "spdlog/spdlog.h"
#include "tools/svg_plot.h"
#include "worker/rpc/ps_client.h"

ABSL_FLAG(int, servers, 1,
          "In-process parameter servers; tensors are placed on them as the scheduler places a "
          "job's.");
ABSL_FLAG(int, workers, 1, "Client threads, each with its own GrpcParameterClient.");
ABSL_FLAG(int, iterations, 0,
          "Operations per worker per (mode, size); 0 adapts per size so each cell runs for "
          "about --min_seconds and at least 3 operations.");
ABSL_FLAG(double, min_seconds, 1.0, "Target duration of a cell when --iterations is 0.");
ABSL_FLAG(std::string, modes, "push,pull,pushpull", "Comma-separated: push, pull, pushpull.");
ABSL_FLAG(std::string, sizes, "4K,64K,1M,16M,64M,256M",
          "Comma-separated tensor sizes in bytes; suffixes K, M, G (powers of 1024) are allowed. "
          "Each must be a positive multiple of 4 (float32).");
ABSL_FLAG(int, tensors, 1,
          "Tensors each size is split into (equal parts, the first ones an element longer), "
          "all pushed or pulled in one operation: a model's many layers rather than one "
          "tensor. 1..4096, and at most one per float32 element of the smallest size.");
ABSL_FLAG(std::string, max_bytes, "", "Skip sizes larger than this (same syntax as --sizes).");
ABSL_FLAG(bool, quick, false,
          "Skip sizes above 64 MiB, run each cell for a fifth of --min_seconds and the TCP "
          "baseline on 256 MiB instead of 1 GiB.");
ABSL_FLAG(std::string, compression, "none",
          "Transfer codec of the tensor: none, fp16, bf16, topk (1% of each chunk, error "
          "feedback) or onebit. Goodput counts float32 tensor bytes; 'wire' is the share "
          "of them that crossed the wire.");
ABSL_FLAG(int, streams, tessera::worker::PsClientOptions().streams,
          "Streams each worker's push or pull aims for over all servers (PsClientOptions::"
          "streams): with fewer servers, a server's share is striped over several TCP "
          "connections.");
ABSL_FLAG(int, pushes_in_flight, tessera::worker::PsClientOptions().pushes_in_flight,
          "Pushes each worker may have unanswered at once, 1 or 2 (PsClientOptions::"
          "pushes_in_flight).");
ABSL_FLAG(uint64_t, overlapped_push_bytes, tessera::worker::PsClientOptions().overlapped_push_bytes,
          "A tensor of fewer float32 bytes waits for each push's answers "
          "(PsClientOptions::overlapped_push_bytes).");
ABSL_FLAG(int, repeat, 1,
          "Run every cell this many times, each right after its own raw TCP baseline, and "
          "report the repetition with the median % of TCP (for shared, noisy machines).");
ABSL_FLAG(std::string, baseline, "",
          "Another topology, SxW (e.g. 1x1), measured side by side: each repetition of a "
          "cell runs on it and on --servers x --workers one right after the other (the "
          "order alternating), and the table adds its goodput and the median of the "
          "per-repetition ratios, so a scaling figure is not a comparison of two runs "
          "minutes apart.");
ABSL_FLAG(std::string, csv, "", "Also write the results as CSV to this path.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this path.");
ABSL_FLAG(std::string, svg, "",
          "Also draw goodput and % of raw TCP against tensor size, per mode, as an SVG "
          "chart at this path.");

namespace tessera::tools {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr int kMaxIterations = 200000;
constexpr int kMaxTensors = 4096;
constexpr char kJobId[] = "bench-pushpull";
// The raw TCP baseline run right before each cell.
constexpr uint64_t kCellTcpBytes = 256 * kMiB;

enum class Mode { kPush, kPull, kPushPull };

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kPush: return "push";
    case Mode::kPull: return "pull";
    case Mode::kPushPull: return "pushpull";
  }
  return "?";
}

struct Cell {
  Mode mode;
  uint64_t size_bytes = 0;
  int iterations = 0;  // per worker
  double seconds = 0;
  double goodput_gbps = 0;
  double pct_of_tcp = 0;
  double tcp_gbps = 0;  // the raw TCP baseline measured right before the cell
  double p50_ms = 0;
  double p99_ms = 0;
  double cpu_s_per_gb = 0;
  double wire_ratio = 1;  // payload bytes on the wire / float32 tensor bytes
  // gRPC messages per operation of one worker, both directions: small
  // tensors share messages (PushChunk.batch, PullChunk.batch).
  double messages_per_op = 0;
  // With --baseline: the baseline topology's median goodput, and the median,
  // lowest and highest of goodput / baseline goodput over the repetitions.
  double baseline_gbps = 0;
  double vs_baseline = 0, vs_baseline_min = 0, vs_baseline_max = 0;
};

// A topology: servers x workers.
struct Topology {
  int servers = 0;
  int workers = 0;
};

// What one run measures, as its outputs name it.
struct Setup {
  int servers = 1;
  int workers = 1;
  int tensors = 1;  // per size
  int streams = 1;
  std::optional<Topology> baseline;
};

// "2x2" -> {2, 2}, each within the bounds --servers and --workers take.
absl::StatusOr<Topology> ParseTopology(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  std::vector<absl::string_view> parts = absl::StrSplit(lower, 'x');
  Topology t;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &t.servers) ||
      !absl::SimpleAtoi(parts[1], &t.workers) || t.servers < 1 || t.servers > 64 ||
      t.workers < 1 || t.workers > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not SERVERSxWORKERS with servers in [1, 64], workers in [1, 256]"));
  }
  return t;
}

// The middle value; for an even count, the mean of the two middle ones.
double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : (v[h - 1] + v[h]) / 2;
}

struct TcpResult {
  uint64_t bytes = 0;
  double seconds = 0;
  double goodput_gbps = 0;
  double cpu_s_per_gb = 0;
};

double CpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// "4096", "4K", "64KiB", "16M", "1G" -> bytes.
absl::StatusOr<uint64_t> ParseBytes(absl::string_view text) {
  std::string s = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  if (absl::EndsWith(s, "IB")) s.resize(s.size() - 2);
  else if (absl::EndsWith(s, "B")) s.resize(s.size() - 1);
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K': mult = 1 << 10; break;
      case 'M': mult = 1 << 20; break;
      case 'G': mult = 1 << 30; break;
      default: break;
    }
    if (mult != 1) s.pop_back();
  }
  uint64_t n = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &n) || n == 0 || n > (uint64_t{1} << 40) / mult) {
    return absl::InvalidArgumentError(absl::StrCat("bad size '", text, "'"));
  }
  return n * mult;
}

std::string SizeLabel(uint64_t bytes) {
  if (bytes % kMiB == 0) return absl::StrCat(bytes / kMiB, " MiB");
  if (bytes % 1024 == 0) return absl::StrCat(bytes / 1024, " KiB");
  return absl::StrCat(bytes, " B");
}

// Raw TCP on loopback: one sender thread writing 1 MiB buffers, one receiver
// thread reading them, `total` bytes; wall time from connect to the last byte
// received.
absl::StatusOr<TcpResult> RunTcpBaseline(uint64_t total) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string err = strerror(errno);
    close(listener);
    return absl::UnavailableError(absl::StrCat("tcp baseline: cannot listen on 127.0.0.1: ", err));
  }
  std::atomic<uint64_t> received{0};
  std::string receiver_error;
  std::thread receiver([&] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) {
      receiver_error = absl::StrCat("accept: ", strerror(errno));
      return;
    }
    std::vector<char> buf(kMiB);
    uint64_t got = 0;
    while (true) {
      const ssize_t n = read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) receiver_error = absl::StrCat("read: ", strerror(errno));
      if (n <= 0) break;
      got += n;
    }
    received = got;
    close(fd);
  });
  const double cpu0 = CpuSeconds();
  const double t0 = Now();
  std::string sender_error;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    sender_error = absl::StrCat("connect: ", strerror(errno));
  } else {
    std::vector<char> buf(kMiB, 'x');
    uint64_t sent = 0;
    while (sent < total && sender_error.empty()) {
      const size_t want = std::min<uint64_t>(buf.size(), total - sent);
      size_t off = 0;
      while (off < want) {
        const ssize_t n = write(fd, buf.data() + off, want - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          sender_error = absl::StrCat("write: ", strerror(errno));
          break;
        }
        off += n;
      }
      sent += off;
    }
  }
  if (fd >= 0) close(fd);
  if (!sender_error.empty()) shutdown(listener, SHUT_RDWR);
  receiver.join();
  const double seconds = Now() - t0;
  const double cpu = CpuSeconds() - cpu0;
  close(listener);
  if (!sender_error.empty()) return absl::InternalError("tcp baseline: " + sender_error);
  if (!receiver_error.empty()) return absl::InternalError("tcp baseline: " + receiver_error);
  if (received != total) {
    return absl::InternalError(
        absl::StrCat("tcp baseline: received ", received.load(), " of ", total, " bytes"));
  }
  TcpResult r;
  r.bytes = total;
  r.seconds = seconds;
  r.goodput_gbps = total / seconds / 1e9;
  r.cpu_s_per_gb = cpu / (total / 1e9);
  return r;
}

// The servers and the job of one benchmark run. Used by the main thread;
// Run() starts and joins the worker threads itself.
class Bench {
 public:
  Bench(int num_servers, int num_workers, int num_tensors, Compression codec)
      : num_servers_(num_servers),
        num_workers_(num_workers),
        num_tensors_(num_tensors),
        codec_(codec) {}

  // Starts the servers, each with the gRPC client (a generated
  // ParameterService::Stub) that creates and drops its jobs.
  absl::Status StartServers() {
    for (int s = 0; s < num_servers_; ++s) {
      servers_.push_back(std::make_unique<server::ParameterServer>());
      if (absl::Status st = servers_.back()->Start("127.0.0.1", 0); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat("server ", s, ": ", st.message()));
      }
      addresses_.push_back(absl::StrCat("127.0.0.1:", servers_.back()->port()));
      admins_.push_back(ParameterService::NewStub(MakeChannel(addresses_.back())));
    }
    return absl::OkStatus();
  }

  // Creates the job holding `bytes` of float32 parameters in num_tensors
  // tensors, placed by the scheduler's planner.
  absl::Status CreateJob(uint64_t bytes) {
    JobSpec spec;
    spec.set_name("bench-pushpull");
    spec.mutable_model()->set_kind(ModelSpec::MLP);
    spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    spec.mutable_optimizer()->set_learning_rate(1e-9f);
    spec.set_mode(ASYNC);
    spec.set_num_workers(num_workers_);
    spec.set_num_servers(num_servers_);
    spec.mutable_compression()->set_codec(codec_);
    ApplyJobDefaults(&spec);
    std::vector<TensorSpec> tensors;
    const std::vector<Range> parts = SplitEvenly(bytes / sizeof(float), num_tensors_);
    for (size_t t = 0; t < parts.size(); ++t) {
      TensorSpec tensor;
      tensor.set_name(num_tensors_ == 1 ? "w" : absl::StrCat("w", t));
      tensor.set_size(parts[t].size());
      tensors.push_back(std::move(tensor));
    }
    std::vector<scheduler::PlannedServer> servers;
    for (int s = 0; s < num_servers_; ++s) {
      servers.push_back({absl::StrCat("s", s), addresses_[s]});
    }
    absl::StatusOr<TensorPlan> plan = scheduler::PlanTensors(tensors, servers);
    if (!plan.ok()) return plan.status();
    plan_ = *std::move(plan);
    *plan_.mutable_compression() = spec.compression();
    // plan_.servers follows the order of `servers`, so server s is admins_[s].
    for (int s = 0; s < num_servers_; ++s) {
      CreateJobRequest create;
      create.set_job_id(kJobId);
      *create.mutable_spec() = spec;
      *create.mutable_tensors() = plan_.tensors();
      *create.mutable_slices() = plan_.servers(s).slices();
      for (int w = 0; w < num_workers_; ++w) create.add_live_workers(w);
      grpc::ClientContext ctx;
      CreateJobResponse resp;
      TESSERA_RETURN_IF_ERROR(FromGrpcStatus(admins_[s]->CreateJob(&ctx, create, &resp),
                                             absl::StrCat("create job on ", addresses_[s])));
    }
    return absl::OkStatus();
  }

  absl::Status DropJob() {
    for (int s = 0; s < num_servers_; ++s) {
      grpc::ClientContext ctx;
      DropJobRequest req;
      req.set_job_id(kJobId);
      DropJobResponse resp;
      TESSERA_RETURN_IF_ERROR(FromGrpcStatus(admins_[s]->DropJob(&ctx, req, &resp),
                                             absl::StrCat("drop job on ", addresses_[s])));
    }
    return absl::OkStatus();
  }

  // Runs `iterations` operations (0: adapt to `min_seconds`) per worker.
  absl::StatusOr<Cell> Run(Mode mode, uint64_t bytes, int iterations, double min_seconds) {
    // Per worker: a client, and a gradient and a parameter buffer per tensor.
    std::vector<std::unique_ptr<worker::GrpcParameterClient>> clients;
    std::vector<std::vector<std::vector<float>>> grads(num_workers_), params(num_workers_);
    std::vector<std::vector<absl::Span<const float>>> grad_spans(num_workers_);
    std::vector<std::vector<absl::Span<float>>> param_spans(num_workers_);
    for (int w = 0; w < num_workers_; ++w) {
      worker::PsClientOptions options;
      options.streams = absl::GetFlag(FLAGS_streams);
      options.pushes_in_flight = absl::GetFlag(FLAGS_pushes_in_flight);
      options.overlapped_push_bytes = absl::GetFlag(FLAGS_overlapped_push_bytes);
      auto client = worker::GrpcParameterClient::Create(kJobId, w, plan_, options);
      if (!client.ok()) return client.status();
      clients.push_back(std::move(*client));
      for (const TensorSpec& t : plan_.tensors()) {
        grads[w].emplace_back(t.size(), 1e-3f);
        params[w].emplace_back(t.size(), 0.0f);
      }
      for (size_t t = 0; t < grads[w].size(); ++t) {
        grad_spans[w].emplace_back(grads[w][t]);
        param_spans[w].emplace_back(params[w][t]);
      }
    }
    int64_t next_clock = 0;
    auto op = [&](int w, int64_t clock) -> absl::Status {
      if (mode != Mode::kPull) {
        if (absl::Status st = clients[w]->Push(clock, grad_spans[w]); !st.ok()) return st;
      }
      if (mode != Mode::kPush) {
        int64_t view_clock = 0;
        return clients[w]->Pull(clock, param_spans[w], &view_clock);
      }
      return absl::OkStatus();
    };
    // Warm-up: one untimed operation per worker (channels, server buffers).
    for (int w = 0; w < num_workers_; ++w) {
      if (absl::Status st = op(w, next_clock); !st.ok()) return st;
      if (absl::Status st = clients[w]->AwaitPushes(); !st.ok()) return st;
    }
    ++next_clock;
    if (iterations <= 0) {
      // Calibration: worker 0 alone for about 5% of min_seconds. With several
      // workers each operation is slower than alone, so a cell may run longer
      // than min_seconds; never shorter.
      int count = 0;
      const double t0 = Now();
      double elapsed = 0;
      do {
        if (absl::Status st = op(0, next_clock++); !st.ok()) return st;
        ++count;
        elapsed = Now() - t0;
      } while (elapsed < 0.05 * min_seconds && count < 1000);
      if (absl::Status st = clients[0]->AwaitPushes(); !st.ok()) return st;
      const double per_op = std::max(elapsed / count, 1e-7);
      iterations = static_cast<int>(
          std::min<double>(kMaxIterations, std::ceil(min_seconds / per_op)));
      iterations = std::max(iterations, 3);
    }

    std::vector<std::vector<double>> latencies(num_workers_);
    std::vector<absl::Status> results(num_workers_);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const int64_t base_clock = next_clock;
    for (int w = 0; w < num_workers_; ++w) {
      threads.emplace_back([&, w] {
        latencies[w].reserve(iterations);
        ++ready;
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < iterations; ++i) {
          const double t0 = Now();
          if (absl::Status st = op(w, base_clock + i); !st.ok()) {
            results[w] = st;
            return;
          }
          latencies[w].push_back(Now() - t0);
        }
        results[w] = clients[w]->AwaitPushes();  // the last push lands in the timed run
      });
    }
    while (ready.load() < num_workers_) std::this_thread::yield();
    std::vector<worker::GrpcParameterClient::TransferBytes> bytes0;
    std::vector<worker::GrpcParameterClient::Messages> messages0;
    for (const auto& client : clients) {
      bytes0.push_back(client->transfer_bytes());
      messages0.push_back(client->messages());
    }
    const double cpu0 = CpuSeconds();
    const double t0 = Now();
    go = true;
    for (auto& t : threads) t.join();
    const double seconds = Now() - t0;
    const double cpu = CpuSeconds() - cpu0;
    double wire = 0, raw = 0, messages = 0;
    for (int w = 0; w < num_workers_; ++w) {
      const auto b = clients[w]->transfer_bytes();
      wire += double(b.push_wire - bytes0[w].push_wire) + double(b.pull_wire - bytes0[w].pull_wire);
      raw += double(b.push_raw - bytes0[w].push_raw) + double(b.pull_raw - bytes0[w].pull_raw);
      const auto m = clients[w]->messages();
      messages += double(m.push - messages0[w].push) + double(m.pull - messages0[w].pull);
    }
    for (int w = 0; w < num_workers_; ++w) {
      if (!results[w].ok()) {
        return absl::Status(results[w].code(),
                            absl::StrCat("worker ", w, ": ", results[w].message()));
      }
    }
    std::vector<double> all;
    for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    auto quantile = [&](double q) {
      const size_t i = std::min(all.size() - 1, static_cast<size_t>(q * (all.size() - 1) + 0.5));
      return all[i];
    };
    const double moved = double(bytes) * (mode == Mode::kPushPull ? 2 : 1) * iterations *
                         num_workers_;
    Cell c;
    c.mode = mode;
    c.size_bytes = bytes;
    c.iterations = iterations;
    c.seconds = seconds;
    c.goodput_gbps = moved / seconds / 1e9;
    c.p50_ms = quantile(0.50) * 1e3;
    c.p99_ms = quantile(0.99) * 1e3;
    c.cpu_s_per_gb = cpu / (moved / 1e9);
    c.wire_ratio = raw > 0 ? wire / raw : 1;
    c.messages_per_op = messages / (double(iterations) * num_workers_);
    return c;
  }

 private:
  const int num_servers_;
  const int num_workers_;
  const int num_tensors_;
  const Compression codec_;
  std::vector<std::unique_ptr<server::ParameterServer>> servers_;
  std::vector<std::string> addresses_;  // per server, "127.0.0.1:port"
  // Per server: the gRPC client that creates and drops the bench's jobs.
  std::vector<std::unique_ptr<ParameterService::Stub>> admins_;
  TensorPlan plan_;
};

// The baseline columns are empty without --baseline.
std::string Csv(const std::vector<Cell>& cells, const TcpResult& tcp, const Setup& setup) {
  const std::optional<Topology>& baseline = setup.baseline;
  std::string out =
      "mode,size_bytes,servers,workers,iterations_per_worker,seconds,goodput_gbps,pct_of_tcp,"
      "p50_ms,p99_ms,cpu_s_per_gb,wire_ratio,tcp_gbps,baseline,baseline_gbps,vs_baseline,"
      "vs_baseline_min,vs_baseline_max,messages_per_op,tensors\n";
  absl::StrAppendFormat(&out, "tcp,%d,0,1,%d,%.4f,%.4f,100.0,,,%.4f,1,%.4f,,,,,,,\n", kMiB,
                        tcp.bytes / kMiB, tcp.seconds, tcp.goodput_gbps, tcp.cpu_s_per_gb,
                        tcp.goodput_gbps);
  for (const Cell& c : cells) {
    absl::StrAppendFormat(&out, "%s,%d,%d,%d,%d,%.4f,%.4f,%.1f,%.4f,%.4f,%.4f,%.4f,%.4f",
                          ModeName(c.mode), c.size_bytes, setup.servers, setup.workers,
                          c.iterations, c.seconds, c.goodput_gbps, c.pct_of_tcp, c.p50_ms,
                          c.p99_ms, c.cpu_s_per_gb, c.wire_ratio, c.tcp_gbps);
    if (baseline) {
      absl::StrAppendFormat(&out, ",%dx%d,%.4f,%.4f,%.4f,%.4f", baseline->servers,
                            baseline->workers, c.baseline_gbps, c.vs_baseline, c.vs_baseline_min,
                            c.vs_baseline_max);
    } else {
      out += ",,,,,";
    }
    absl::StrAppendFormat(&out, ",%.2f,%d\n", c.messages_per_op, setup.tensors);
  }
  return out;
}

std::string Json(const std::vector<Cell>& cells, const TcpResult& tcp, const Setup& setup) {
  const std::optional<Topology>& baseline = setup.baseline;
  std::vector<std::string> rows;
  for (const Cell& c : cells) {
    std::string vs;
    if (baseline) {
      vs = absl::StrFormat(", \"baseline_gbps\": %.4f, \"vs_baseline\": %.4f, "
                           "\"vs_baseline_min\": %.4f, \"vs_baseline_max\": %.4f",
                           c.baseline_gbps, c.vs_baseline, c.vs_baseline_min, c.vs_baseline_max);
    }
    rows.push_back(absl::StrFormat(
        "    {\"mode\": \"%s\", \"size_bytes\": %d, \"iterations_per_worker\": %d, "
        "\"seconds\": %.4f, \"goodput_gbps\": %.4f, \"pct_of_tcp\": %.1f, \"p50_ms\": %.4f, "
        "\"p99_ms\": %.4f, \"cpu_s_per_gb\": %.4f, \"wire_ratio\": %.4f, "
        "\"messages_per_op\": %.2f, \"tcp_gbps\": %.4f%s}",
        ModeName(c.mode), c.size_bytes, c.iterations, c.seconds, c.goodput_gbps, c.pct_of_tcp,
        c.p50_ms, c.p99_ms, c.cpu_s_per_gb, c.wire_ratio, c.messages_per_op, c.tcp_gbps, vs));
  }
  const std::string base =
      baseline ? absl::StrFormat("{\"servers\": %d, \"workers\": %d}", baseline->servers,
                                 baseline->workers)
               : "null";
  return absl::StrFormat(
      "{\n  \"servers\": %d,\n  \"workers\": %d,\n  \"tensors\": %d,\n  \"baseline\": %s,\n  "
      "\"tcp\": {\"bytes\": %d, \"seconds\": %.4f, \"goodput_gbps\": %.4f, \"cpu_s_per_gb\": "
      "%.4f},\n  \"results\": [\n%s\n  ]\n}\n",
      setup.servers, setup.workers, setup.tensors, base, tcp.bytes, tcp.seconds,
      tcp.goodput_gbps, tcp.cpu_s_per_gb, absl::StrJoin(rows, ",\n"));
}

// Goodput and % of raw TCP against tensor size (log scale), one line per
// mode, with the raw TCP baseline (per size, the mean of its cells' adjacent
// baselines) and the 70% mark.
std::string Svg(const std::vector<Cell>& cells, const std::vector<Mode>& modes,
                const std::vector<uint64_t>& sizes, const Setup& setup) {
  Panel goodput{"goodput", "tensor size", "GB/s", {}, {}};
  Panel ratio{"goodput / raw TCP loopback", "tensor size", "% of raw TCP", {}, {}};
  for (uint64_t size : sizes) {
    goodput.x_ticks.emplace_back(std::log2(static_cast<double>(size)), SizeLabel(size));
  }
  ratio.x_ticks = goodput.x_ticks;
  Series tcp{"raw TCP", {}, {}};
  for (uint64_t size : sizes) {
    double sum = 0;
    int n = 0;
    for (const Cell& c : cells) {
      if (c.size_bytes != size) continue;
      sum += c.tcp_gbps;
      ++n;
    }
    if (n == 0) continue;
    tcp.x.push_back(std::log2(static_cast<double>(size)));
    tcp.y.push_back(sum / n);
  }
  for (Mode mode : modes) {
    Series g{ModeName(mode), {}, {}}, r{ModeName(mode), {}, {}};
    for (const Cell& c : cells) {
      if (c.mode != mode) continue;
      const double x = std::log2(static_cast<double>(c.size_bytes));
      g.x.push_back(x);
      g.y.push_back(c.goodput_gbps);
      r.x.push_back(x);
      r.y.push_back(c.pct_of_tcp);
    }
    goodput.series.push_back(std::move(g));
    ratio.series.push_back(std::move(r));
  }
  goodput.series.push_back(std::move(tcp));
  if (!sizes.empty()) {
    const double lo = std::log2(static_cast<double>(sizes.front()));
    const double hi = std::log2(static_cast<double>(sizes.back()));
    ratio.series.push_back(Series{"70%", {lo, hi}, {70, 70}});
  }
  return RenderSvg(absl::StrFormat("tessera bench pushpull: %d server(s) x %d worker(s), %d "
                                   "tensor(s), %d stream(s) per push or pull, loopback",
                                   setup.servers, setup.workers, setup.tensors, setup.streams),
                   {goodput, ratio});
}

int Main() {
  const int servers = absl::GetFlag(FLAGS_servers);
  const int workers = absl::GetFlag(FLAGS_workers);
  const int iterations = absl::GetFlag(FLAGS_iterations);
  const bool quick = absl::GetFlag(FLAGS_quick);
  double min_seconds = absl::GetFlag(FLAGS_min_seconds);
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "tessera-bench-pushpull: %s\n", msg.c_str());
    return 2;
  };
  if (servers < 1 || servers > 64) return fail("--servers must be in [1, 64]");
  if (workers < 1 || workers > 256) return fail("--workers must be in [1, 256]");
  const int streams = absl::GetFlag(FLAGS_streams);
  if (streams < 1 || streams > worker::kMaxStreams) {
    return fail(absl::StrCat("--streams must be in [1, ", worker::kMaxStreams, "]"));
  }
  if (iterations < 0 || iterations > kMaxIterations) {
    return fail(absl::StrCat("--iterations must be in [0, ", kMaxIterations, "]"));
  }
  if (!(min_seconds > 0) || min_seconds > 600) return fail("--min_seconds must be in (0, 600]");
  const int tensors = absl::GetFlag(FLAGS_tensors);
  if (tensors < 1 || tensors > kMaxTensors) {
    return fail(absl::StrCat("--tensors must be in [1, ", kMaxTensors, "]"));
  }
  const int repeat = absl::GetFlag(FLAGS_repeat);
  if (repeat < 1 || repeat > 100) return fail("--repeat must be in [1, 100]");
  if (quick) min_seconds /= 5;
  std::optional<Topology> baseline;
  if (const std::string b = absl::GetFlag(FLAGS_baseline); !b.empty()) {
    absl::StatusOr<Topology> t = ParseTopology(b);
    if (!t.ok()) return fail(absl::StrCat("--baseline: ", t.status().message()));
    if (t->servers == servers && t->workers == workers) {
      return fail(absl::StrCat("--baseline: ", b, " is the topology being measured"));
    }
    baseline = *t;
  }

  std::vector<Mode> modes;
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_modes), ',', absl::SkipEmpty())) {
    m = absl::StripAsciiWhitespace(m);
    if (m == "push") modes.push_back(Mode::kPush);
    else if (m == "pull") modes.push_back(Mode::kPull);
    else if (m == "pushpull" || m == "push+pull") modes.push_back(Mode::kPushPull);
    else return fail(absl::StrCat("unknown mode '", m, "' in --modes (push, pull, pushpull)"));
  }
  if (modes.empty()) return fail("--modes is empty");

  uint64_t max_bytes = 0;
  if (!absl::GetFlag(FLAGS_max_bytes).empty()) {
    auto b = ParseBytes(absl::GetFlag(FLAGS_max_bytes));
    if (!b.ok()) return fail(absl::StrCat("--max_bytes: ", b.status().message()));
    max_bytes = *b;
  }
  std::vector<uint64_t> sizes;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',', absl::SkipEmpty())) {
    auto b = ParseBytes(s);
    if (!b.ok()) return fail(absl::StrCat("--sizes: ", b.status().message()));
    if (*b % sizeof(float) != 0) {
      return fail(absl::StrCat("--sizes: ", *b, " bytes is not a multiple of 4 (float32)"));
    }
    if (*b / sizeof(float) < static_cast<uint64_t>(tensors)) {
      return fail(absl::StrCat("--sizes: ", *b, " bytes cannot be split into --tensors=", tensors,
                               " tensors of at least one float32 each"));
    }
    if (max_bytes > 0 && *b > max_bytes) continue;
    if (quick && *b > 64 * kMiB) continue;
    sizes.push_back(*b);
  }
  if (sizes.empty()) return fail("no sizes left to run (see --sizes, --max_bytes, --quick)");

  // Open the output files now: a bad path fails before the long run.
  std::ofstream csv_out, json_out;
  if (const std::string path = absl::GetFlag(FLAGS_csv); !path.empty()) {
    csv_out.open(path, std::ios::binary | std::ios::trunc);
    if (!csv_out) return fail(absl::StrCat("--csv: cannot open ", path, " for writing"));
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    json_out.open(path, std::ios::binary | std::ios::trunc);
    if (!json_out) return fail(absl::StrCat("--json: cannot open ", path, " for writing"));
  }
  std::ofstream svg_out;
  if (const std::string path = absl::GetFlag(FLAGS_svg); !path.empty()) {
    svg_out.open(path, std::ios::binary | std::ios::trunc);
    if (!svg_out) return fail(absl::StrCat("--svg: cannot open ", path, " for writing"));
  }

  // The servers' INFO lines (job created, dropped) would interleave with the table.
  spdlog::set_level(spdlog::level::warn);

  const uint64_t tcp_bytes = quick ? 256 * kMiB : 1024 * kMiB;
  std::printf("tessera-bench-pushpull: %d server(s) x %d worker(s), %d tensor(s) per size, "
              "%d stream(s) per push or pull, ASYNC, loopback gRPC; GB = 1e9 bytes\n",
              servers, workers, tensors, streams);
  std::printf("malloc: %s\n", tessera::HugePageMallocEnabled()
                                  ? "transparent huge pages (glibc.malloc.hugetlb=1)"
                                  : "4 KiB pages (glibc.malloc.hugetlb is not 1: "
                                    "TESSERA_HUGE_PAGES=0, GLIBC_TUNABLES set otherwise, or THP "
                                    "off on this machine)");
  std::fflush(stdout);
  absl::StatusOr<TcpResult> tcp = RunTcpBaseline(tcp_bytes);
  if (!tcp.ok()) return fail(std::string(tcp.status().message()));
  std::printf("raw TCP loopback: %s in 1 MiB write()s, %.3f s, %.3f GB/s, %.3f CPU s/GB\n\n",
              SizeLabel(tcp->bytes).c_str(), tcp->seconds, tcp->goodput_gbps, tcp->cpu_s_per_gb);
  if (repeat > 1) std::printf("each cell: the median of %d repetitions by %% of TCP\n", repeat);
  if (baseline) {
    std::printf("side by side with %dx%d: 'base GB/s' its median goodput, 'x base' the median "
                "(lowest-highest) of GB/s / base GB/s over the repetitions\n",
                baseline->servers, baseline->workers);
  }
  std::printf("%-9s %9s %7s %10s %9s %9s %10s %10s %9s %6s %8s", "mode", "size", "iters",
              "GB/s", "% of TCP", "TCP GB/s", "p50 ms", "p99 ms", "CPU s/GB", "wire", "msgs/op");
  if (baseline) std::printf(" %10s %18s", "base GB/s", "x base");
  std::printf("\n");
  std::fflush(stdout);

  absl::StatusOr<Compression> codec = ParseCompression(absl::GetFlag(FLAGS_compression));
  if (!codec.ok()) return fail(absl::StrCat("--compression: ", codec.status().message()));
  // The measured topology, then the baseline's when asked for; both keep
  // their servers for the whole run (each stops in its destructor).
  std::vector<std::unique_ptr<Bench>> benches;
  benches.push_back(std::make_unique<Bench>(servers, workers, tensors, *codec));
  if (baseline) {
    benches.push_back(
        std::make_unique<Bench>(baseline->servers, baseline->workers, tensors, *codec));
  }
  for (auto& b : benches) {
    if (absl::Status st = b->StartServers(); !st.ok()) {
      return fail(std::string(st.message()));
    }
  }
  std::vector<Cell> cells;
  for (uint64_t size : sizes) {
    for (auto& b : benches) {
      if (absl::Status st = b->CreateJob(size); !st.ok()) {
        return fail(std::string(st.message()));
      }
    }
    for (Mode mode : modes) {
      std::vector<Cell> reps;
      std::vector<double> base_gbps, ratios;
      for (int r = 0; r < repeat; ++r) {
        absl::StatusOr<TcpResult> adjacent = RunTcpBaseline(kCellTcpBytes);
        if (!adjacent.ok()) {
          return fail(std::string(adjacent.status().message()));
        }
        // One cell per topology; with a baseline, every other repetition runs
        // it first, so neither side always gets the warmer machine.
        std::vector<Cell> got(benches.size());
        for (size_t k = 0; k < benches.size(); ++k) {
          const size_t b = (r % 2 == 1) ? benches.size() - 1 - k : k;
          absl::StatusOr<Cell> c = benches[b]->Run(mode, size, iterations, min_seconds);
          if (!c.ok()) {
            return fail(absl::StrCat(ModeName(mode), " ", SizeLabel(size),
                                     b == 0 ? "" : " (baseline)", ": ", c.status().ToString()));
          }
          got[b] = *c;
        }
        Cell& c = got[0];
        c.tcp_gbps = adjacent->goodput_gbps;
        c.pct_of_tcp = 100.0 * c.goodput_gbps / c.tcp_gbps;
        if (baseline) {
          base_gbps.push_back(got[1].goodput_gbps);
          ratios.push_back(c.goodput_gbps / got[1].goodput_gbps);
        }
        reps.push_back(c);
      }
      std::sort(reps.begin(), reps.end(),
                [](const Cell& a, const Cell& b) { return a.pct_of_tcp < b.pct_of_tcp; });
      Cell c = reps[reps.size() / 2];
      std::printf("%-9s %9s %7d %10.3f %8.1f%% %9.3f %10.3f %10.3f %9.3f %5.1f%% %8.1f",
                  ModeName(mode), SizeLabel(size).c_str(), c.iterations, c.goodput_gbps,
                  c.pct_of_tcp, c.tcp_gbps, c.p50_ms, c.p99_ms, c.cpu_s_per_gb,
                  100 * c.wire_ratio, c.messages_per_op);
      if (baseline) {
        c.baseline_gbps = Median(base_gbps);
        c.vs_baseline = Median(ratios);
        c.vs_baseline_min = *std::min_element(ratios.begin(), ratios.end());
        c.vs_baseline_max = *std::max_element(ratios.begin(), ratios.end());
        std::printf(" %10.3f %18s", c.baseline_gbps,
                    absl::StrFormat("%.3f (%.3f-%.3f)", c.vs_baseline, c.vs_baseline_min,
                                    c.vs_baseline_max)
                        .c_str());
      }
      std::printf("\n");
      std::fflush(stdout);
      cells.push_back(c);
    }
    for (auto& b : benches) {
      if (absl::Status st = b->DropJob(); !st.ok()) {
        return fail(std::string(st.message()));
      }
    }
  }
  benches.clear();

  const Setup setup{servers, workers, tensors, streams, baseline};
  if (csv_out.is_open()) {
    csv_out << Csv(cells, *tcp, setup);
    csv_out.close();
    if (!csv_out) return fail(absl::StrCat("--csv: cannot write ", absl::GetFlag(FLAGS_csv)));
  }
  if (json_out.is_open()) {
    json_out << Json(cells, *tcp, setup);
    json_out.close();
    if (!json_out) return fail(absl::StrCat("--json: cannot write ", absl::GetFlag(FLAGS_json)));
  }
  if (svg_out.is_open()) {
    svg_out << Svg(cells, modes, sizes, setup);
    svg_out.close();
    if (!svg_out) return fail(absl::StrCat("--svg: cannot write ", absl::GetFlag(FLAGS_svg)));
  }
  return 0;
}

}  // namespace
}  // namespace tessera::tools

int main(int argc, char** argv) {
  tessera::RestartWithHugePageMalloc(argv);
  // The same allocator setting as tessera-server and tessera-worker: without it
  // every chunk buffer over 128 KiB is a fresh mmap and page-faults on each use.
  tessera::KeepLargeAllocations();
  tessera::DisableMutexDeadlockDetection();
  absl::SetProgramUsageMessage(
      "Push/pull goodput, latency and CPU cost against raw TCP loopback.\n"
      "Usage: tessera-bench-pushpull [--servers=1] [--workers=1] [--sizes=4K,64K,1M,16M,64M,256M] "
      "[--modes=push,pull,pushpull] [--streams=2] [--baseline=SxW] [--quick] [--csv=PATH] "
      "[--json=PATH] "
      "[--svg=PATH]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "tessera-bench-pushpull: unexpected argument '%s' (see --help)\n",
                 rest[1]);
    return 2;
  }
  return tessera::tools::Main();
}
