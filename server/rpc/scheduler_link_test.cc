#include "server/rpc/scheduler_link.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/rpc/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera::server {
namespace {

using ::testing::HasSubstr;

// A scheduler that answers RegisterNode and Heartbeat; after `forget_after`
// heartbeats it forgets every node once (as after a restart).
class FakeScheduler final : public SchedulerService::Service {
 public:
  explicit FakeScheduler(int forget_after) : forget_after_(forget_after) {}

  grpc::Status RegisterNode(grpc::ServerContext*, const RegisterNodeRequest* req,
                            RegisterNodeResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++registrations_;
    last_request_ = *req;
    node_id_ = absl::StrCat("node-", registrations_);
    resp->set_node_id(node_id_);
    resp->set_heartbeat_interval_ms(5);
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext*, const HeartbeatRequest* req,
                         HeartbeatResponse*) override {
    absl::MutexLock lock(&mu_);
    if (req->node_id() != node_id_) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown node " + req->node_id());
    }
    if (++heartbeats_ == forget_after_) node_id_.clear();
    return grpc::Status::OK;
  }

  // Waits until at least `n` registrations and `h` heartbeats happened.
  void WaitFor(int n, int h) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return registrations_ >= n && heartbeats_ >= h;
    };
    mu_.Await(absl::Condition(&done));
  }

  RegisterNodeRequest last_request() {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }

 private:
  const int forget_after_;
  absl::Mutex mu_;
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  std::string node_id_ ABSL_GUARDED_BY(mu_);
  RegisterNodeRequest last_request_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<grpc::Server> Serve(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

TEST(SchedulerLinkTest, RegistersHeartbeatsAndReRegistersWhenForgotten) {
  FakeScheduler scheduler(/*forget_after=*/3);
  int port = 0;
  auto server = Serve(&scheduler, &port);
  ASSERT_NE(server, nullptr);

  SchedulerLink::Options options;
  options.scheduler_address = absl::StrCat("127.0.0.1:", port);
  options.name = "server-a";
  options.address = "127.0.0.1:5555";
  SchedulerLink link(options);
  link.Start([](const absl::Status& s) { ADD_FAILURE() << "fatal: " << s; });
  scheduler.WaitFor(/*registrations=*/2, /*heartbeats=*/5);
  link.Stop();
  EXPECT_EQ(scheduler.last_request().role(), SERVER);
  EXPECT_EQ(scheduler.last_request().name(), "server-a");
  EXPECT_EQ(scheduler.last_request().address(), "127.0.0.1:5555");
  EXPECT_GE(link.registrations(), 2);
  EXPECT_EQ(link.node_id().rfind("node-", 0), 0u);
  server->Shutdown();
}

TEST(SchedulerLinkTest, GivesUpWithAClearMessageWhenTheSchedulerIsUnreachable) {
  // A port that was free a moment ago and has nothing listening now.
  FakeScheduler unused(0);
  int port = 0;
  auto server = Serve(&unused, &port);
  ASSERT_NE(server, nullptr);
  server->Shutdown();
  server.reset();

  SchedulerLink::Options options;
  options.scheduler_address = absl::StrCat("127.0.0.1:", port);
  options.name = "server-b";
  options.register_deadline = absl::Milliseconds(300);
  options.rpc_timeout = absl::Milliseconds(200);
  SchedulerLink link(options);
  absl::Notification fatal;
  absl::Status status;
  link.Start([&](const absl::Status& s) {
    status = s;
    fatal.Notify();
  });
  fatal.WaitForNotification();
  link.Stop();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("cannot reach scheduler at 127.0.0.1:", port)));
  EXPECT_EQ(link.registrations(), 0);
}

TEST(SchedulerLinkTest, StopInterruptsRetries) {
  SchedulerLink::Options options;
  options.scheduler_address = "127.0.0.1:1";
  options.name = "server-c";
  options.register_deadline = absl::Hours(1);
  SchedulerLink link(options);
  link.Start([](const absl::Status& s) { ADD_FAILURE() << "fatal: " << s; });
  EXPECT_FALSE(link.WaitRegistered(absl::Milliseconds(50)));
  link.Stop();  // returns promptly; a hang fails by ctest's timeout
}

}  // namespace
}  // namespace tessera::server
