#include "server/rpc/scheduler_link.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/grpc_status.h"
#include "spdlog/spdlog.h"

namespace tessera::server {

SchedulerLink::SchedulerLink(Options options)
    : options_(std::move(options)),
      stub_(SchedulerService::NewStub(MakeChannel(options_.scheduler_address))),
      heartbeat_interval_(options_.default_heartbeat_interval) {}

SchedulerLink::~SchedulerLink() { Stop(); }

void SchedulerLink::Start(std::function<void(const absl::Status&)> on_fatal) {
  on_fatal_ = std::move(on_fatal);
  thread_ = std::thread([this] { Run(); });
}

void SchedulerLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool SchedulerLink::WaitRegistered(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto registered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return registrations_ > 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&registered), timeout);
}

std::string SchedulerLink::node_id() const {
  absl::MutexLock lock(&mu_);
  return node_id_;
}

int64_t SchedulerLink::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

int64_t SchedulerLink::heartbeats() const {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

bool SchedulerLink::SleepOrStop(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

absl::Status SchedulerLink::RegisterOnce() {
  RegisterNodeRequest req;
  req.set_role(SERVER);
  req.set_name(options_.name);
  req.set_address(options_.address);
  RegisterNodeResponse resp;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, options_.rpc_timeout);
  absl::Status s = FromGrpcStatus(stub_->RegisterNode(&ctx, req, &resp));
  if (!s.ok()) return s;
  absl::MutexLock lock(&mu_);
  node_id_ = resp.node_id();
  heartbeat_interval_ = resp.heartbeat_interval_ms() > 0
                            ? absl::Milliseconds(resp.heartbeat_interval_ms())
                            : options_.default_heartbeat_interval;
  ++registrations_;
  return absl::OkStatus();
}

absl::Status SchedulerLink::RegisterUntil(absl::Time give_up) {
  absl::Duration backoff = options_.initial_backoff;
  bool warned = false;
  while (true) {
    absl::Status s = RegisterOnce();
    if (s.ok()) {
      spdlog::info("registered with scheduler {} as '{}' (node id {})",
                   options_.scheduler_address, options_.name, node_id());
      return s;
    }
    if (absl::Now() >= give_up) {
      return absl::UnavailableError(absl::StrCat("cannot reach scheduler at ",
                                                 options_.scheduler_address, ": ", s.message()));
    }
    if (!warned) {
      spdlog::warn("scheduler {} not reachable yet ({}); retrying", options_.scheduler_address,
                   s.ToString());
      warned = true;
    } else {
      spdlog::debug("register with {}: {}", options_.scheduler_address, s.ToString());
    }
    if (SleepOrStop(std::min(backoff, std::max(give_up - absl::Now(), absl::ZeroDuration())))) {
      return absl::CancelledError("stopping");
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status SchedulerLink::HeartbeatOnce() {
  HeartbeatRequest req;
  req.set_node_id(node_id());
  HeartbeatResponse resp;
  grpc::ClientContext ctx;
  SetTimeout(&ctx, options_.rpc_timeout);
  absl::Status s = FromGrpcStatus(stub_->Heartbeat(&ctx, req, &resp));
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    ++heartbeats_;
  }
  return s;
}

void SchedulerLink::Run() {
  absl::Status s = RegisterUntil(absl::Now() + options_.register_deadline);
  if (absl::IsCancelled(s)) return;
  if (!s.ok()) {
    if (on_fatal_) on_fatal_(s);
    return;
  }
  bool degraded = false;
  while (true) {
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      interval = heartbeat_interval_;
    }
    if (SleepOrStop(interval)) return;
    s = HeartbeatOnce();
    if (absl::IsNotFound(s)) {
      spdlog::warn("scheduler {} does not know this node ({}); registering again",
                   options_.scheduler_address, std::string(s.message()));
      // Already serving: keep trying for as long as it takes.
      if (absl::IsCancelled(RegisterUntil(absl::InfiniteFuture()))) return;
      degraded = false;
    } else if (!s.ok() && !degraded) {
      spdlog::warn("heartbeat to scheduler {} failed: {}", options_.scheduler_address,
                   s.ToString());
      degraded = true;
    } else if (s.ok() && degraded) {
      spdlog::info("heartbeats to scheduler {} succeed again", options_.scheduler_address);
      degraded = false;
    }
  }
}

}  // namespace tessera::server
