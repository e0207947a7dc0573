// Sync (BSP) training on Tessera equals single-process SGD on the union batch:
// W workers and 2 parameter servers (real gRPC on 127.0.0.1, in one process)
// against one Model + the same Optimizer on the concatenated batches.

#include <cmath>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "common/range.h"
#include "common/rpc/grpc_status.h"
#include "gtest/gtest.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/optimizer.h"
#include "server/rpc/parameter_server.h"
#include "tests/test_cluster.h"
#include "worker/dataset.h"
#include "worker/model.h"
#include "worker/rpc/ps_client.h"

namespace tessera {
namespace {

constexpr int kSteps = 20;
constexpr int kServers = 2;

JobSpec Spec(OptimizerSpec::Kind kind, int workers) {
  JobSpec spec;
  spec.set_name("equivalence");
  spec.mutable_model()->set_kind(ModelSpec::MLP);
  spec.mutable_model()->add_hidden_layers(48);
  spec.mutable_model()->add_hidden_layers(24);
  spec.mutable_optimizer()->set_kind(kind);
  spec.mutable_optimizer()->set_learning_rate(kind == OptimizerSpec::SGD ? 0.05f : 0.003f);
  if (kind == OptimizerSpec::SGD) {
    spec.mutable_optimizer()->set_momentum(0.9f);
    spec.mutable_optimizer()->set_nesterov(true);
  }
  spec.set_batch_size(16);
  spec.set_mode(SYNC);
  spec.set_seed(11);
  spec.set_num_workers(workers);
  spec.set_num_servers(kServers);
  ApplyJobDefaults(&spec);
  return spec;
}

double RelativeError(absl::Span<const float> got, absl::Span<const float> want) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    ref += double(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::sqrt(ref);
}

class SyncEquivalenceTest
    : public ::testing::TestWithParam<std::tuple<int, OptimizerSpec::Kind>> {};

TEST_P(SyncEquivalenceTest, DistributedEqualsSingleProcessOnUnionBatches) {
  const auto [workers, kind] = GetParam();
  const JobSpec spec = Spec(kind, workers);
  absl::StatusOr<worker::Dataset> data =
      worker::LoadIdxSplit(testing::FashionMnistDir(), /*train=*/true, 3000);
  ASSERT_TRUE(data.ok()) << data.status();
  const int classes = 10;

  // Servers, and the job on them: every tensor split evenly over the servers.
  std::vector<std::unique_ptr<server::ParameterServer>> servers;
  for (int s = 0; s < kServers; ++s) {
    servers.push_back(std::make_unique<server::ParameterServer>());
    ASSERT_TRUE(servers.back()->Start("127.0.0.1", 0).ok());
  }
  absl::StatusOr<std::unique_ptr<worker::Model>> probe =
      worker::Model::Create(spec.model(), data->dim, classes, spec.batch_size());
  ASSERT_TRUE(probe.ok()) << probe.status();
  const std::vector<TensorSpec> tensors = (*probe)->Parameters();
  TensorPlan plan;
  for (const TensorSpec& t : tensors) *plan.add_tensors() = t;
  for (int s = 0; s < kServers; ++s) {
    ServerSlices* ss = plan.add_servers();
    ss->set_server_id(absl::StrCat("s", s));
    ss->set_address(absl::StrCat("127.0.0.1:", servers[s]->port()));
    CreateJobRequest create;
    create.set_job_id("job-eq");
    *create.mutable_spec() = spec;
    for (const TensorSpec& t : tensors) {
      *create.add_tensors() = t;
      const Range r = SplitEvenly(t.size(), kServers)[s];
      if (r.empty()) continue;
      TensorSlice slice;
      slice.set_tensor(t.name());
      slice.set_begin(r.begin);
      slice.set_end(r.end);
      *create.add_slices() = slice;
      *ss->add_slices() = slice;
    }
    for (int w = 0; w < workers; ++w) create.add_live_workers(w);
    auto stub = ParameterService::NewStub(MakeChannel(ss->address()));
    grpc::ClientContext ctx;
    CreateJobResponse resp;
    grpc::Status st = stub->CreateJob(&ctx, create, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  // Workers train concurrently; each records its batches.
  std::vector<std::vector<std::vector<int64_t>>> batches(
      kSteps, std::vector<std::vector<int64_t>>(workers));
  std::vector<absl::Status> results(workers);
  std::vector<std::vector<std::vector<float>>> final_params(workers);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      auto fail = [&](absl::Status st) { results[w] = st; };
      auto model = worker::Model::Create(spec.model(), data->dim, classes, spec.batch_size());
      if (!model.ok()) return fail(model.status());
      auto client = worker::GrpcParameterClient::Create("job-eq", w, plan);
      if (!client.ok()) return fail(client.status());
      std::vector<absl::Span<float>> params;
      std::vector<absl::Span<const float>> grads;
      for (int i = 0; i < (*model)->num_tensors(); ++i) {
        params.push_back((*model)->param(i));
        grads.push_back((*model)->grad(i));
      }
      worker::BatchSampler sampler(worker::ShardOf(data->size, w, workers), spec.batch_size(),
                                   spec.seed(), w);
      sampler.StartEpoch(0);
      std::vector<float> x;
      std::vector<int32_t> y;
      for (int step = 0; step < kSteps; ++step) {
        if (absl::Status st = (*client)->Pull(step, absl::MakeSpan(params), nullptr); !st.ok()) return fail(st);
        sampler.Batch(step, &batches[step][w]);
        worker::Gather(*data, batches[step][w], &x, &y);
        (*model)->ForwardBackward(x.data(), y.data(), spec.batch_size()).value();
        if (absl::Status st = (*client)->Push(step, absl::MakeSpan(grads)); !st.ok()) return fail(st);
      }
      if (absl::Status st = (*client)->Pull(kSteps, absl::MakeSpan(params), nullptr); !st.ok()) return fail(st);
      for (auto p : params) final_params[w].emplace_back(p.begin(), p.end());
    });
  }
  for (auto& t : threads) t.join();
  for (int w = 0; w < workers; ++w) ASSERT_TRUE(results[w].ok()) << "worker " << w << ": " << results[w];

  // The single-process reference on the union of each step's batches.
  const int union_batch = workers * spec.batch_size();
  auto ref = worker::Model::Create(spec.model(), data->dim, classes, union_batch);
  ASSERT_TRUE(ref.ok());
  (*ref)->InitializeParameters(spec.seed());
  auto optimizer = server::Optimizer::Create(spec.optimizer());
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  std::vector<std::unique_ptr<server::OptimizerState>> states;
  for (int i = 0; i < (*ref)->num_tensors(); ++i) {
    states.push_back((*optimizer)->NewState((*ref)->param(i).size()));
  }
  std::vector<float> x;
  std::vector<int32_t> y;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<int64_t> all;
    for (int w = 0; w < workers; ++w) {
      all.insert(all.end(), batches[step][w].begin(), batches[step][w].end());
    }
    worker::Gather(*data, all, &x, &y);
    (*ref)->ForwardBackward(x.data(), y.data(), union_batch).value();
    for (int i = 0; i < (*ref)->num_tensors(); ++i) {
      (*optimizer)->Apply((*ref)->param(i), (*ref)->grad(i), states[i].get());
    }
  }

  for (int w = 0; w < workers; ++w) {
    for (int i = 0; i < (*ref)->num_tensors(); ++i) {
      const double err = RelativeError(final_params[w][i], (*ref)->param(i));
      EXPECT_LT(err, 1e-5) << "worker " << w << " tensor " << tensors[i].name();
    }
  }
  // Training moved the weights: the comparison is not of two initial states.
  auto init = worker::Model::Create(spec.model(), data->dim, classes, 1);
  (*init)->InitializeParameters(spec.seed());
  EXPECT_GT(RelativeError((*init)->param(0), (*ref)->param(0)), 1e-3);
  for (auto& s : servers) s->Stop();
}

INSTANTIATE_TEST_SUITE_P(
    WorkersAndOptimizers, SyncEquivalenceTest,
    ::testing::Combine(::testing::Values(2, 3),
                       ::testing::Values(OptimizerSpec::SGD, OptimizerSpec::ADAM)),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param), "workers_",
                          OptimizerName(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace tessera
