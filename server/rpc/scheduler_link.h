#ifndef TESSERA_SERVER_RPC_SCHEDULER_LINK_H_
#define TESSERA_SERVER_RPC_SCHEDULER_LINK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/scheduler_service.grpc.pb.h"

namespace tessera::server {

// Keeps a parameter server registered with the scheduler. A member thread
// registers (role SERVER, retrying with exponential backoff), then sends a
// heartbeat every heartbeat_interval_ms the scheduler asked for; when a
// heartbeat gets NOT_FOUND (the scheduler restarted and forgot this node) it
// registers again. If the first registration has not succeeded within
// Options::register_deadline, `on_fatal` is called once with UNAVAILABLE
// "cannot reach scheduler at X: ..." and the thread ends.
// Thread-safe. Start() and Stop() from one owning thread.
class SchedulerLink {
 public:
  struct Options {
    std::string scheduler_address;  // host:port; required
    std::string name;               // stable node name
    std::string address;            // host:port where this server listens
    absl::Duration register_deadline = absl::Seconds(30);
    absl::Duration rpc_timeout = absl::Seconds(5);
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(2);
    // Used when the scheduler's RegisterNodeResponse names no interval.
    absl::Duration default_heartbeat_interval = absl::Seconds(1);
  };

  explicit SchedulerLink(Options options);
  ~SchedulerLink();  // Stop()s
  SchedulerLink(const SchedulerLink&) = delete;
  SchedulerLink& operator=(const SchedulerLink&) = delete;

  // Starts the link thread. `on_fatal` runs on that thread, holding no lock.
  void Start(std::function<void(const absl::Status&)> on_fatal);

  // Stops and joins the thread; safe to call more than once.
  void Stop();

  // Blocks until registered (true) or `timeout` passes (false).
  bool WaitRegistered(absl::Duration timeout) const;

  std::string node_id() const;
  int64_t registrations() const;  // successful RegisterNode calls
  int64_t heartbeats() const;     // successful Heartbeat calls

 private:
  void Run();
  // Registers, retrying until OK, `give_up` passes or Stop().
  absl::Status RegisterUntil(absl::Time give_up);
  absl::Status RegisterOnce();
  absl::Status HeartbeatOnce();
  // Waits `d` or until Stop(); true when stopping.
  bool SleepOrStop(absl::Duration d);

  const Options options_;
  std::unique_ptr<SchedulerService::Stub> stub_;
  std::function<void(const absl::Status&)> on_fatal_;  // set before the thread starts
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string node_id_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_);
  int64_t registrations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_RPC_SCHEDULER_LINK_H_
