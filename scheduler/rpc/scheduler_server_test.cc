#include "scheduler/rpc/scheduler_server.h"

#include "common/file_util.h"
#include "common/rpc/grpc_status.h"
#include "gtest/gtest.h"
#include "proto/scheduler_service.grpc.pb.h"

namespace tessera::scheduler {
namespace {

class SchedulerServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<SchedulerServer>(SchedulerOptions(), dir_.path() + "/jobs.db");
    ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
    ASSERT_GT(server_->port(), 0);
    stub_ = SchedulerService::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", server_->port())));
  }
  // A client context with a hard deadline, so a broken server fails the test
  // instead of hanging it.
  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    SetTimeout(ctx.get(), absl::Seconds(10));
    return ctx;
  }
  static JobSpec GoodSpec() {
    JobSpec spec;
    spec.mutable_model()->set_kind(ModelSpec::MLP);
    spec.mutable_model()->add_hidden_layers(32);
    spec.mutable_optimizer()->set_kind(OptimizerSpec::ADAM);
    spec.mutable_optimizer()->set_learning_rate(0.001f);
    return spec;
  }

  ScopedTempDir dir_ = ScopedTempDir::Create("tessera-schedrpc").value();  // outlives server_
  std::unique_ptr<SchedulerServer> server_;
  std::unique_ptr<SchedulerService::Stub> stub_;
};

TEST_F(SchedulerServerTest, SubmitGetListCancel) {
  SubmitJobRequest submit;
  *submit.mutable_spec() = GoodSpec();
  submit.mutable_spec()->set_name("over-grpc");
  SubmitJobResponse submitted;
  grpc::Status st = stub_->SubmitJob(Ctx().get(), submit, &submitted);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(submitted.job_id(), "job-1");

  GetJobRequest get;
  get.set_job_id(submitted.job_id());
  JobInfo info;
  ASSERT_TRUE(stub_->GetJob(Ctx().get(), get, &info).ok());
  EXPECT_EQ(info.name(), "over-grpc");
  EXPECT_EQ(info.state(), PENDING);  // no nodes
  EXPECT_FLOAT_EQ(info.spec().optimizer().beta2(), 0.999f);  // defaults applied

  ListJobsResponse list;
  ASSERT_TRUE(stub_->ListJobs(Ctx().get(), ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);

  CancelJobRequest cancel;
  cancel.set_job_id(submitted.job_id());
  CancelJobResponse cancelled;
  ASSERT_TRUE(stub_->CancelJob(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), CANCELLED);
  st = stub_->CancelJob(Ctx().get(), cancel, &cancelled);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message(), "job-1 already cancelled");

  // Nodes register and are listed.
  RegisterNodeRequest reg;
  reg.set_role(SERVER);
  reg.set_name("server-0");
  reg.set_address("127.0.0.1:1");
  RegisterNodeResponse registered;
  ASSERT_TRUE(stub_->RegisterNode(Ctx().get(), reg, &registered).ok());
  EXPECT_EQ(registered.heartbeat_interval_ms(), 500);
  HeartbeatRequest hb;
  hb.set_node_id(registered.node_id());
  HeartbeatResponse beat;
  EXPECT_TRUE(stub_->Heartbeat(Ctx().get(), hb, &beat).ok());
  ListNodesResponse nodes;
  ASSERT_TRUE(stub_->ListNodes(Ctx().get(), ListNodesRequest(), &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_TRUE(nodes.nodes(0).alive());
}

TEST_F(SchedulerServerTest, BadSpecAndUnknownJobGetClearStatuses) {
  SubmitJobRequest submit;
  *submit.mutable_spec() = GoodSpec();
  submit.mutable_spec()->mutable_optimizer()->set_learning_rate(-1);
  SubmitJobResponse submitted;
  grpc::Status st = stub_->SubmitJob(Ctx().get(), submit, &submitted);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("optimizer.learning_rate"), std::string::npos)
      << st.error_message();

  GetJobRequest get;
  get.set_job_id("job-77");
  JobInfo info;
  st = stub_->GetJob(Ctx().get(), get, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("job-77"), std::string::npos) << st.error_message();

  HeartbeatRequest hb;
  hb.set_node_id("who?");
  HeartbeatResponse beat;
  EXPECT_EQ(stub_->Heartbeat(Ctx().get(), hb, &beat).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerServerTest, JobsSurviveARestartOnTheSameFile) {
  SubmitJobRequest submit;
  *submit.mutable_spec() = GoodSpec();
  SubmitJobResponse submitted;
  ASSERT_TRUE(stub_->SubmitJob(Ctx().get(), submit, &submitted).ok());
  server_->Stop();
  server_ = std::make_unique<SchedulerServer>(SchedulerOptions(), dir_.path() + "/jobs.db");
  ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
  stub_ = SchedulerService::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", server_->port())));
  ListJobsResponse list;
  ASSERT_TRUE(stub_->ListJobs(Ctx().get(), ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).job_id(), submitted.job_id());
}

TEST(SchedulerServerStartTest, UnopenableDatabaseIsAnError) {
  SchedulerServer server(SchedulerOptions(), "/nonexistent-dir/jobs.db");
  absl::Status st = server.Start("127.0.0.1", 0);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent-dir/jobs.db"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace tessera::scheduler
