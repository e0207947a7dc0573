#include "common/job_spec.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

JobSpec Minimal() {
  JobSpec spec;
  spec.mutable_model()->set_kind(ModelSpec::MLP);
  spec.mutable_model()->add_hidden_layers(64);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::ADAM);
  spec.mutable_optimizer()->set_learning_rate(0.001f);
  return spec;
}

TEST(JobSpecTest, DefaultsMakeAMinimalSpecValid) {
  JobSpec spec = Minimal();
  ApplyJobDefaults(&spec);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_EQ(spec.mode(), SYNC);
  EXPECT_EQ(spec.batch_size(), 64);
  EXPECT_EQ(spec.data().path(), kDefaultDataPath);
  EXPECT_FLOAT_EQ(spec.optimizer().beta2(), 0.999f);
}

TEST(JobSpecTest, ErrorsNameTheField) {
  struct Case {
    void (*mutate)(JobSpec*);
    const char* field;
  } cases[] = {
      {[](JobSpec* s) { s->mutable_model()->clear_kind(); }, "model.type"},
      {[](JobSpec* s) { s->mutable_model()->clear_hidden_layers(); }, "model.hidden_layers"},
      {[](JobSpec* s) { s->mutable_model()->set_hidden_layers(0, -3); }, "hidden_layers[0]"},
      {[](JobSpec* s) { s->mutable_optimizer()->clear_kind(); }, "optimizer.type"},
      {[](JobSpec* s) { s->mutable_optimizer()->set_learning_rate(-1); }, "learning_rate"},
      {[](JobSpec* s) { s->mutable_optimizer()->set_nesterov(true); }, "nesterov"},
      {[](JobSpec* s) { s->set_batch_size(-4); }, "batch_size"},
      {[](JobSpec* s) { s->set_staleness(2); }, "staleness"},
      {[](JobSpec* s) { s->set_num_workers(5000); }, "num_workers"},
      {[](JobSpec* s) { s->mutable_compression()->set_topk_warmup_steps(-1); },
       "compression.topk_warmup_steps"},
      {[](JobSpec* s) { s->mutable_compression()->set_topk_warmup_start_ratio(1.5); },
       "compression.topk_warmup_start_ratio"},
      {[](JobSpec* s) { s->mutable_compression()->set_topk_warmup_start_ratio(-0.1); },
       "compression.topk_warmup_start_ratio"},
      {[](JobSpec* s) {
         s->mutable_compression()->set_precondition_on_worker(true);
         s->mutable_optimizer()->set_kind(OptimizerSpec::SGD);
       },
       "compression.precondition_on_worker needs optimizer.type adam"},
      {[](JobSpec* s) {
         s->mutable_compression()->set_precondition_on_worker(true);
         s->mutable_optimizer()->set_weight_decay(1e-4f);
       },
       "compression.precondition_on_worker needs optimizer.weight_decay 0"},
      {[](JobSpec* s) {  // a warm-up that would start below the target
         s->mutable_compression()->set_topk_ratio(0.5);
         s->mutable_compression()->set_topk_warmup_steps(10);
         s->mutable_compression()->set_topk_warmup_start_ratio(0.1);
       },
       "compression.topk_warmup_start_ratio"},
  };
  for (const Case& c : cases) {
    JobSpec spec = Minimal();
    c.mutate(&spec);
    ApplyJobDefaults(&spec);
    absl::Status st = ValidateJobSpec(spec);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(st.message().find(c.field), absl::string_view::npos) << st;
  }
}

TEST(JobSpecTest, TopKWarmupDecaysExponentiallyToTheRatio) {
  CompressionSpec c;
  c.set_topk_ratio(0.01);
  c.set_topk_warmup_steps(4);
  c.set_topk_warmup_start_ratio(0.16);
  // 0.16 * (0.01 / 0.16)^(step / 4): the ratio halves every step.
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 0), 0.16);
  EXPECT_NEAR(TopKRatioAt(c, 1), 0.08, 1e-12);
  EXPECT_NEAR(TopKRatioAt(c, 2), 0.04, 1e-12);
  EXPECT_NEAR(TopKRatioAt(c, 3), 0.02, 1e-12);
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 4), 0.01);
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 1000), 0.01);

  c.set_topk_warmup_steps(0);  // off
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 0), 0.01);
  c.Clear();  // unset fields read as the defaults: 1%, no warm-up
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 0), 0.01);
  c.set_topk_warmup_steps(2);  // default start: 25%
  EXPECT_DOUBLE_EQ(TopKRatioAt(c, 0), 0.25);
  EXPECT_NEAR(TopKRatioAt(c, 1), 0.05, 1e-12);  // sqrt(0.25 * 0.01)
}

TEST(JobSpecTest, TopKWarmupStartDefaultsToAQuarter) {
  JobSpec spec = Minimal();
  spec.mutable_compression()->set_codec(COMPRESSION_TOPK);
  spec.mutable_compression()->set_topk_warmup_steps(100);
  ApplyJobDefaults(&spec);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_DOUBLE_EQ(spec.compression().topk_warmup_start_ratio(), 0.25);

  spec = Minimal();  // never below the target
  spec.mutable_compression()->set_topk_ratio(0.5);
  spec.mutable_compression()->set_topk_warmup_steps(100);
  ApplyJobDefaults(&spec);
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  EXPECT_DOUBLE_EQ(spec.compression().topk_warmup_start_ratio(), 0.5);

  spec = Minimal();  // no warm-up: no start ratio
  ApplyJobDefaults(&spec);
  EXPECT_EQ(spec.compression().topk_warmup_start_ratio(), 0);
}

TEST(JobSpecTest, PreconditionedOnWorkerOnlyForErrorFeedbackCodecs) {
  CompressionSpec c;
  c.set_codec(COMPRESSION_TOPK);
  c.set_min_elements(100);
  (*c.mutable_tensors())["e"] = COMPRESSION_FP16;
  (*c.mutable_tensors())["o"] = COMPRESSION_ONEBIT;
  TensorSpec t;
  t.set_size(1000);
  t.set_name("w");
  EXPECT_FALSE(PreconditionedOnWorker(c, t));  // option off
  c.set_precondition_on_worker(true);
  EXPECT_TRUE(PreconditionedOnWorker(c, t));   // topk
  t.set_name("o");
  EXPECT_TRUE(PreconditionedOnWorker(c, t));   // onebit
  t.set_name("e");
  EXPECT_FALSE(PreconditionedOnWorker(c, t));  // fp16: no error feedback
  t.set_name("b");
  t.set_size(10);
  EXPECT_FALSE(PreconditionedOnWorker(c, t));  // below min_elements: fp32
}

TEST(JobSpecTest, PreconditioningNeedsAdamsSecondMomentSettings) {
  // A plan built by hand (the worker checks it too) may skip ValidateJobSpec.
  CompressionSpec c;
  c.set_precondition_on_worker(true);
  OptimizerSpec adam;
  adam.set_kind(OptimizerSpec::ADAM);
  adam.set_beta2(0.999f);
  adam.set_epsilon(1e-8f);
  EXPECT_TRUE(CheckPreconditioning(c, adam).ok());
  adam.set_beta2(1.0f);
  EXPECT_EQ(CheckPreconditioning(c, adam).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(CheckPreconditioning(c, adam).message().find("optimizer.beta2"), std::string::npos);
  adam.set_beta2(0.999f);
  adam.set_epsilon(-1.0f);
  EXPECT_EQ(CheckPreconditioning(c, adam).code(), absl::StatusCode::kInvalidArgument);
  c.set_precondition_on_worker(false);
  EXPECT_TRUE(CheckPreconditioning(c, adam).ok());  // off: nothing to check
}

}  // namespace
}  // namespace tessera
