// Bad input of every kind gets a clear error and a non-zero exit: never a
// crash or a hang. Real processes on 127.0.0.1.

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/grpc_status.h"
#include "gtest/gtest.h"
#include "proto/parameter_service.grpc.pb.h"
#include "tests/test_cluster.h"
#include "tools/local_cluster.h"
#include "tools/scheduler_client.h"
#include "worker/rpc/ps_client.h"

namespace tessera {
namespace {

using testing::CliResult;
using testing::RunProgram;
using testing::RunTessera;
using testing::SilentListener;
using testing::TestDir;
using testing::UnusedPort;

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

void ExpectFailsWith(const CliResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, -1) << "hung: " << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n" << r.output;
}

TEST(BadInputTest, MalformedOrIncompleteJobYaml) {
  const TestDir temp;
  const std::string& dir = temp.path();
  const std::string unused = absl::StrCat("--scheduler=127.0.0.1:", UnusedPort());
  ExpectFailsWith(RunTessera({"submit", WriteFile(dir, "a.yaml", "model: [oops"), unused}),
                  "not valid YAML");
  ExpectFailsWith(RunTessera({"submit", WriteFile(dir, "b.yaml", "model: {type: mlp, hidden_layers: [8]}\n"), unused}),
                  "optimizer: required");
  ExpectFailsWith(RunTessera({"submit", WriteFile(dir, "c.yaml",
                                                  "model: {type: mlp, hidden_layers: [8]}\n"
                                                  "optimizer: {type: adam, learning_rate: 0.1}\n"
                                                  "epochz: 3\n"),
                              unused}),
                  "epochz: unknown key");
  ExpectFailsWith(RunTessera({"submit", dir + "/missing.yaml", unused}), "no such file");
  ExpectFailsWith(RunTessera({"local", WriteFile(dir, "d.yaml", "\x01\x02garbage: [")}), "d.yaml");
  ExpectFailsWith(RunTessera({"submit"}), "needs one JOB.yaml");
  ExpectFailsWith(RunTessera({"frobnicate"}), "unknown command");
  ExpectFailsWith(RunTessera({"list", "--bogus=1"}), "unknown flag --bogus");
}

TEST(BadInputTest, SchedulerNobodyListensOn) {
  const std::string addr = absl::StrCat("127.0.0.1:", UnusedPort());
  ExpectFailsWith(RunTessera({"list", "--scheduler=" + addr}), addr);
  ExpectFailsWith(RunProgram("tessera-worker", {"--scheduler=" + addr, "--connect_timeout_s=2"}),
                  addr);
}

TEST(BadInputTest, SchedulerThatNeverAnswersHitsTheDeadline) {
  SilentListener silent;
  const std::string addr = absl::StrCat("127.0.0.1:", silent.port());
  const absl::Time start = absl::Now();
  CliResult r = RunTessera({"list", "--scheduler=" + addr, "--timeout_s=2"}, absl::Seconds(30));
  ExpectFailsWith(r, addr);
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

TEST(BadInputTest, ParameterServerNobodyListensOn) {
  for (bool silent_peer : {false, true}) {
    SilentListener silent;
    const std::string addr =
        absl::StrCat("127.0.0.1:", silent_peer ? silent.port() : UnusedPort());
    TensorPlan plan;
    TensorSpec* t = plan.add_tensors();
    t->set_name("w");
    t->set_size(10);
    ServerSlices* s = plan.add_servers();
    s->set_server_id("s0");
    s->set_address(addr);
    TensorSlice* slice = s->add_slices();
    slice->set_tensor("w");
    slice->set_begin(0);
    slice->set_end(10);
    worker::PsClientOptions options;
    options.pull_timeout = absl::Seconds(1);
    options.push_timeout = absl::Seconds(1);
    auto client = worker::GrpcParameterClient::Create("job-1", 0, plan, options);
    ASSERT_TRUE(client.ok()) << client.status();
    std::vector<float> w(10);
    std::vector<absl::Span<float>> params = {absl::MakeSpan(w)};
    absl::Status st = (*client)->Pull(0, absl::MakeSpan(params), nullptr);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find(addr), absl::string_view::npos) << st;
    std::vector<absl::Span<const float>> grads = {absl::MakeConstSpan(w)};
    st = (*client)->Push(0, absl::MakeSpan(grads));
    if (st.ok()) st = (*client)->AwaitPushes();  // a push in flight reports here
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find(addr), absl::string_view::npos) << st;
  }
}

// One cluster for the tests that need servers and workers.
class ClusterBadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tools::LocalClusterOptions o;
    o.bin_dir = testing::BinDir();
    dir_ = new TestDir();
    o.out_dir = dir_->path();
    o.servers = 1;
    o.workers = 1;
    o.heartbeat_timeout_ms = 3000;
    cluster_ = new tools::LocalCluster(o);
    absl::Status st = cluster_->Start();
    ASSERT_TRUE(st.ok()) << st;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete dir_;  // after the cluster that writes there
    dir_ = nullptr;
  }

  static JobSpec TinyJob(const std::string& data) {
    JobSpec spec;
    spec.mutable_model()->set_kind(ModelSpec::SOFTMAX_REGRESSION);
    spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
    spec.mutable_optimizer()->set_learning_rate(0.1f);
    spec.mutable_data()->set_path(data);
    spec.mutable_data()->set_train_limit(256);
    spec.mutable_data()->set_test_limit(100);
    spec.set_batch_size(32);
    return spec;
  }

  static JobInfo RunToEnd(const JobSpec& spec) {
    tools::SchedulerClient client(cluster_->scheduler_address(), absl::Seconds(10));
    absl::StatusOr<std::string> id = client.Submit(spec);
    EXPECT_TRUE(id.ok()) << id.status();
    const absl::Time until = absl::Now() + absl::Seconds(60);
    while (id.ok() && absl::Now() < until) {
      absl::StatusOr<JobInfo> info = client.GetJob(*id);
      if (info.ok() && (info->state() == SUCCEEDED || info->state() == FAILED)) return *info;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "job did not end";
    return JobInfo();
  }

  static TestDir* dir_;
  static tools::LocalCluster* cluster_;
};

TestDir* ClusterBadInputTest::dir_ = nullptr;
tools::LocalCluster* ClusterBadInputTest::cluster_ = nullptr;

TEST_F(ClusterBadInputTest, MissingDataFailsTheJobWithTheFileName) {
  JobInfo info = RunToEnd(TinyJob("/nonexistent/fashion"));
  EXPECT_EQ(info.state(), FAILED);
  EXPECT_NE(info.error().find("/nonexistent/fashion"), std::string::npos) << info.error();
  EXPECT_TRUE(cluster_->CheckHealth().ok());
}

TEST_F(ClusterBadInputTest, WrongFormatFailsTheJob) {
  const TestDir temp;
  const std::string& dir = temp.path();
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    WriteFile(dir, f, "this is a text file, not IDX\n");
  }
  JobInfo info = RunToEnd(TinyJob(dir));
  EXPECT_EQ(info.state(), FAILED);
  EXPECT_NE(info.error().find("IDX"), std::string::npos) << info.error();
  EXPECT_TRUE(cluster_->CheckHealth().ok());
  // The worker is free again and a good job still runs.
  JobInfo good = RunToEnd(TinyJob(testing::FashionMnistDir()));
  EXPECT_EQ(good.state(), SUCCEEDED) << good.error();
}

TEST_F(ClusterBadInputTest, BadPushesGetClearStatuses) {
  tools::SchedulerClient client(cluster_->scheduler_address(), absl::Seconds(10));
  absl::StatusOr<std::vector<NodeInfo>> nodes = client.ListNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  std::string address;
  for (const NodeInfo& n : *nodes) {
    if (n.role() == SERVER) address = n.address();
  }
  ASSERT_FALSE(address.empty());
  auto stub = ParameterService::NewStub(MakeChannel(address));

  CreateJobRequest create;
  create.set_job_id("bad-push-job");
  *create.mutable_spec() = TinyJob("/x");
  create.mutable_spec()->set_num_workers(1);
  create.mutable_spec()->set_num_servers(1);
  create.mutable_spec()->set_batch_size(32);
  create.mutable_spec()->set_epochs(1);
  create.mutable_spec()->set_mode(SYNC);
  create.mutable_spec()->set_seed(1);
  create.mutable_spec()->mutable_optimizer()->set_learning_rate(0.1f);
  TensorSpec* t = create.add_tensors();
  t->set_name("w");
  t->set_size(100);
  t->set_init(TensorSpec::ZEROS);
  TensorSlice* slice = create.add_slices();
  slice->set_tensor("w");
  slice->set_begin(0);
  slice->set_end(100);
  create.add_live_workers(0);
  {
    grpc::ClientContext ctx;
    CreateJobResponse resp;
    ASSERT_TRUE(stub->CreateJob(&ctx, create, &resp).ok());
  }
  auto push = [&](const std::string& job, const std::string& tensor, uint64_t offset,
                  size_t bytes) {
    grpc::ClientContext ctx;
    SetTimeout(&ctx, absl::Seconds(10));
    PushResponse resp;
    auto writer = stub->Push(&ctx, &resp);
    PushChunk chunk;
    chunk.set_job_id(job);
    chunk.set_worker(0);
    chunk.set_clock(0);
    chunk.set_tensor(tensor);
    chunk.set_offset(offset);
    chunk.set_values(std::string(bytes, '\0'));
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  };
  grpc::Status st = push("bad-push-job", "w", 0, 400 + 4);  // 101 values into 100
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("'w'"), std::string::npos) << st.error_message();
  st = push("bad-push-job", "w", 0, 40);  // covers 10 of 100
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  st = push("bad-push-job", "w", 0, 7);  // not whole floats
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  st = push("bad-push-job", "nope", 0, 400);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("nope"), std::string::npos) << st.error_message();
  st = push("no-such-job", "w", 0, 400);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("no-such-job"), std::string::npos) << st.error_message();
  // A correct push still works, and the server is alive.
  st = push("bad-push-job", "w", 0, 400);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(cluster_->CheckHealth().ok());
}

}  // namespace
}  // namespace tessera
