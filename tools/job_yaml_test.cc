#include "tools/job_yaml.h"

#include "common/job_spec.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

void ExpectInvalid(const std::string& yaml, const std::string& needle) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(yaml);
  ASSERT_FALSE(spec.ok()) << yaml;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find(needle), absl::string_view::npos)
      << "message: " << spec.status().message() << "\nwanted: " << needle;
}

TEST(JobYamlTest, ParsesTheStragglerInjectorAndRoundTrips) {
  const std::string base = "model: {type: softmax_regression}\noptimizer: {type: sgd, learning_rate: 0.1}\n";
  absl::StatusOr<JobSpec> spec = ParseJobYaml(base + R"(
straggler: {transient_probability: 0.1, transient_delay_ms: 40, persistent_rank: 2, persistent_factor: 2.5}
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_DOUBLE_EQ(spec->straggler().transient_probability(), 0.1);
  EXPECT_EQ(spec->straggler().transient_delay_ms(), 40);
  EXPECT_EQ(spec->straggler().persistent_rank(), 2);
  EXPECT_FLOAT_EQ(spec->straggler().persistent_factor(), 2.5f);
  absl::StatusOr<JobSpec> again = ParseJobYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_EQ(again->straggler().SerializeAsString(), spec->straggler().SerializeAsString());
  // Off unless asked for.
  absl::StatusOr<JobSpec> plain = ParseJobYaml(base);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->has_straggler());
  ExpectInvalid(base + "straggler: {transient_probability: 1.5}\n",
                "straggler.transient_probability");
  ExpectInvalid(base + "straggler: {slow: 1}\n", "slow");
  ExpectInvalid(base + "ssp_cache: true\n", "ssp_cache needs mode: ssp");
  absl::StatusOr<JobSpec> cached = ParseJobYaml(base + "mode: ssp\nstaleness: 3\nssp_cache: true\n");
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_TRUE(cached->ssp_cache());
}

TEST(JobYamlTest, ParsesEveryField) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"(
name: t
model: {type: mlp, hidden_layers: [32, 16]}
optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0001}
batch_size: 32
epochs: 3
max_steps: 100
mode: ssp
staleness: 2
data: {format: idx, path: /tmp/d, train_limit: 1000, test_limit: 500}
seed: 9
num_workers: 3
num_servers: 2
log_every_steps: 5
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model().kind(), ModelSpec::MLP);
  ASSERT_EQ(spec->model().hidden_layers_size(), 2);
  EXPECT_EQ(spec->model().hidden_layers(1), 16);
  EXPECT_TRUE(spec->optimizer().nesterov());
  EXPECT_FLOAT_EQ(spec->optimizer().weight_decay(), 0.0001f);
  EXPECT_EQ(spec->mode(), SSP);
  EXPECT_EQ(spec->staleness(), 2);
  EXPECT_EQ(spec->data().train_limit(), 1000);
  EXPECT_EQ(spec->num_workers(), 3);
  EXPECT_EQ(spec->max_steps(), 100);
  // Round trip through the renderer.
  absl::StatusOr<JobSpec> again = ParseJobYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_EQ(again->SerializeAsString(), spec->SerializeAsString());
}

TEST(JobYamlTest, CompressionPerJobAndPerTensor) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"(
model: {type: mlp, hidden_layers: [32]}
optimizer: {type: adam, learning_rate: 0.001}
compression:
  codec: topk
  topk_ratio: 0.05
  min_elements: 100
  tensors: {dense0/b: none, dense1/w: fp16}
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const CompressionSpec& c = spec->compression();
  EXPECT_EQ(c.codec(), COMPRESSION_TOPK);
  EXPECT_DOUBLE_EQ(c.topk_ratio(), 0.05);
  TensorSpec t;
  t.set_name("dense0/w");
  t.set_size(1000);
  EXPECT_EQ(TensorCompression(c, t), COMPRESSION_TOPK);
  t.set_size(99);
  EXPECT_EQ(TensorCompression(c, t), COMPRESSION_NONE);  // below min_elements
  t.set_name("dense1/w");
  EXPECT_EQ(TensorCompression(c, t), COMPRESSION_FP16);  // per-tensor entry wins
  absl::StatusOr<JobSpec> again = ParseJobYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*again, *spec))
      << JobSpecToYaml(*spec);

  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: sgd, learning_rate: 1}\n"
                "compression: {codec: zip}\n", "unknown value 'zip'");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: sgd, learning_rate: 1}\n"
                "compression: {codec: topk, topk_ratio: 2}\n", "compression.topk_ratio");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: sgd, learning_rate: 1}\n"
                "compression: {tensors: [a, b]}\n", "compression.tensors");
}

TEST(JobYamlTest, ParsesPreconditionOnWorker) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"(
model: {type: mlp, hidden_layers: [8]}
optimizer: {type: adam, learning_rate: 0.001}
compression: {codec: topk, topk_ratio: 0.01, min_elements: 1000, precondition_on_worker: true}
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->compression().precondition_on_worker());
  absl::StatusOr<JobSpec> again = ParseJobYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*again, *spec))
      << JobSpecToYaml(*spec);

  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.1}\n"
                "compression: {codec: topk, precondition_on_worker: often}\n",
                "compression.precondition_on_worker: expected true or false");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: sgd, learning_rate: 0.1}\n"
                "compression: {codec: topk, precondition_on_worker: true}\n",
                "compression.precondition_on_worker needs optimizer.type adam");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\n"
                "optimizer: {type: adam, learning_rate: 0.1, weight_decay: 0.01}\n"
                "compression: {codec: topk, precondition_on_worker: true}\n",
                "compression.precondition_on_worker needs optimizer.weight_decay 0");
}

TEST(JobYamlTest, ParsesTopKWarmup) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"(
model: {type: mlp, hidden_layers: [8]}
optimizer: {type: adam, learning_rate: 0.001}
compression: {codec: topk, topk_ratio: 0.01, topk_warmup_steps: 469, topk_warmup_start_ratio: 0.5}
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->compression().topk_warmup_steps(), 469);
  EXPECT_DOUBLE_EQ(spec->compression().topk_warmup_start_ratio(), 0.5);
  absl::StatusOr<JobSpec> again = ParseJobYaml(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*again, *spec))
      << JobSpecToYaml(*spec);

  spec = ParseJobYaml(  // the start ratio defaults to 25%
      "model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.001}\n"
      "compression: {codec: topk, topk_warmup_steps: 100}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_DOUBLE_EQ(spec->compression().topk_warmup_start_ratio(), 0.25);

  const std::string head =
      "model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.001}\n";
  ExpectInvalid(head + "compression: {codec: topk, topk_warmup_steps: -5}\n",
                "compression.topk_warmup_steps: must be in 0..");
  ExpectInvalid(head + "compression: {codec: topk, topk_warmup_steps: 2.5}\n",
                "compression.topk_warmup_steps: expected an integer");
  ExpectInvalid(head + "compression: {codec: topk, topk_warmup_steps: 10, "
                       "topk_warmup_start_ratio: 1.5}\n",
                "compression.topk_warmup_start_ratio: must be in (0, 1]");
  ExpectInvalid(head + "compression: {codec: topk, topk_warmup_steps: 10, "
                       "topk_warmup_start_ratio: 0}\n",
                "compression.topk_warmup_start_ratio: must be in (0, 1]");
  ExpectInvalid(head + "compression: {codec: topk, topk_ratio: 0.5, topk_warmup_steps: 10, "
                       "topk_warmup_start_ratio: 0.2}\n",
                "compression.topk_warmup_start_ratio must be >= topk_ratio");
}

TEST(JobYamlTest, ClearErrorsForBadSpecs) {
  ExpectInvalid("", "empty");
  ExpectInvalid("model: [unclosed", "not valid YAML");
  ExpectInvalid("- a\n- b\n", "expected a mapping");
  ExpectInvalid("optimizer: {type: adam, learning_rate: 0.1}\n", "model: required");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\n", "optimizer: required");
  ExpectInvalid("model: {type: cnn}\noptimizer: {type: adam, learning_rate: 0.1}\n",
                "model.type: unknown value 'cnn'");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.1}\nbatch_sise: 3\n",
                "batch_sise: unknown key");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: fast}\n",
                "optimizer.learning_rate: expected a number");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.1}\nepochs: 2.5\n",
                "epochs: expected an integer");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.1}\nmode: bsp\n",
                "mode: unknown value 'bsp'");
  ExpectInvalid("model: {type: mlp, hidden_layers: 8}\noptimizer: {type: adam, learning_rate: 0.1}\n",
                "model.hidden_layers: expected a list");
  ExpectInvalid("model: {type: mlp}\noptimizer: {type: adam, learning_rate: 0.1}\n",
                "model.hidden_layers");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam}\n",
                "optimizer.learning_rate");
  ExpectInvalid("model: {type: mlp, hidden_layers: [8]}\noptimizer: {type: adam, learning_rate: 0.1}\nnum_workers: 0\n",
                "num_workers");
}

TEST(JobYamlTest, ErrorsNameTheLine) {
  ExpectInvalid("model:\n  type: mlp\n  hidden_layers: [8]\noptimizer:\n  type: adam\n  learning_rate: 0.1\n  betta1: 0.9\n",
                "line 7");
}

TEST(JobYamlTest, BundledJobsParse) {
  for (const char* name :
       {"fashion_mlp.yaml", "fashion_softmax.yaml", "fashion_mlp_topk.yaml"}) {
    absl::StatusOr<JobSpec> spec = LoadJobYaml(std::string(TESSERA_SOURCE_DIR) + "/tools/jobs/" + name);
    EXPECT_TRUE(spec.ok()) << name << ": " << spec.status();
  }
}

TEST(JobYamlTest, MissingFileIsNotFound) {
  absl::StatusOr<JobSpec> spec = LoadJobYaml("/nonexistent/job.yaml");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(spec.status().message().find("/nonexistent/job.yaml"), absl::string_view::npos);
}

}  // namespace
}  // namespace tessera::tools
