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

}  // namespace
}  // namespace tessera
