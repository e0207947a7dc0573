#include "common/job_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tessera {
namespace {

constexpr int kMaxNodes = 1024;
constexpr double kDefaultTopKRatio = 0.01;
// DGC's first warm-up epoch keeps 25%.
constexpr double kDefaultTopKWarmupStartRatio = 0.25;

}  // namespace

void ApplyJobDefaults(JobSpec* spec) {
  if (spec->name().empty()) spec->set_name("job");
  if (spec->batch_size() == 0) spec->set_batch_size(64);
  if (spec->epochs() == 0) spec->set_epochs(1);
  if (spec->mode() == CONSISTENCY_MODE_UNSPECIFIED) spec->set_mode(SYNC);
  if (spec->seed() == 0) spec->set_seed(1);
  if (spec->num_workers() == 0) spec->set_num_workers(1);
  if (spec->num_servers() == 0) spec->set_num_servers(1);
  if (spec->log_every_steps() == 0) spec->set_log_every_steps(20);
  CompressionSpec* compression = spec->mutable_compression();
  if (compression->topk_ratio() == 0) compression->set_topk_ratio(kDefaultTopKRatio);
  if (compression->topk_warmup_steps() > 0 && compression->topk_warmup_start_ratio() == 0) {
    compression->set_topk_warmup_start_ratio(
        std::max(kDefaultTopKWarmupStartRatio, compression->topk_ratio()));
  }
  DataSpec* data = spec->mutable_data();
  if (data->format() == DataSpec::FORMAT_UNSPECIFIED) data->set_format(DataSpec::IDX);
  if (data->path().empty()) data->set_path(kDefaultDataPath);
  OptimizerSpec* opt = spec->mutable_optimizer();
  switch (opt->kind()) {
    case OptimizerSpec::ADAM:
      if (opt->beta1() == 0) opt->set_beta1(0.9f);
      if (opt->beta2() == 0) opt->set_beta2(0.999f);
      if (opt->epsilon() == 0) opt->set_epsilon(1e-8f);
      break;
    case OptimizerSpec::ADAGRAD:
      if (opt->epsilon() == 0) opt->set_epsilon(1e-10f);
      if (opt->initial_accumulator() == 0) opt->set_initial_accumulator(0.1f);
      break;
    default:
      break;
  }
}

absl::Status ValidateJobSpec(const JobSpec& spec) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  const ModelSpec& model = spec.model();
  if (model.kind() == ModelSpec::KIND_UNSPECIFIED) {
    return bad("model.type is required (softmax_regression or mlp)");
  }
  if (model.kind() == ModelSpec::MLP && model.hidden_layers_size() == 0) {
    return bad("model.hidden_layers: an mlp needs at least one hidden layer");
  }
  if (model.kind() == ModelSpec::SOFTMAX_REGRESSION && model.hidden_layers_size() != 0) {
    return bad("model.hidden_layers: softmax_regression has no hidden layers");
  }
  for (int i = 0; i < model.hidden_layers_size(); ++i) {
    const int w = model.hidden_layers(i);
    if (w <= 0 || w > 65536) {
      return bad("model.hidden_layers[", i, "] = ", w, ": must be in 1..65536");
    }
  }
  const OptimizerSpec& opt = spec.optimizer();
  if (opt.kind() == OptimizerSpec::KIND_UNSPECIFIED) {
    return bad("optimizer.type is required (sgd, adagrad or adam)");
  }
  if (!(opt.learning_rate() > 0) || !std::isfinite(opt.learning_rate())) {
    return bad("optimizer.learning_rate must be a positive number, got ", opt.learning_rate());
  }
  if (opt.momentum() < 0 || opt.momentum() >= 1) {
    return bad("optimizer.momentum must be in [0, 1), got ", opt.momentum());
  }
  if (opt.nesterov() && (opt.kind() != OptimizerSpec::SGD || opt.momentum() == 0)) {
    return bad("optimizer.nesterov needs type sgd with a momentum > 0");
  }
  if (opt.kind() == OptimizerSpec::ADAM) {
    if (opt.beta1() < 0 || opt.beta1() >= 1) return bad("optimizer.beta1 must be in [0, 1)");
    if (opt.beta2() < 0 || opt.beta2() >= 1) return bad("optimizer.beta2 must be in [0, 1)");
  }
  if (opt.epsilon() < 0) return bad("optimizer.epsilon must be >= 0");
  if (opt.weight_decay() < 0) return bad("optimizer.weight_decay must be >= 0");
  if (spec.batch_size() < 1 || spec.batch_size() > 1 << 20) {
    return bad("batch_size must be in 1..1048576, got ", spec.batch_size());
  }
  if (spec.epochs() < 1 || spec.epochs() > 100000) {
    return bad("epochs must be in 1..100000, got ", spec.epochs());
  }
  if (spec.max_steps() < 0) return bad("max_steps must be >= 0");
  if (spec.staleness() < 0) return bad("staleness must be >= 0");
  if (spec.staleness() > 0 && spec.mode() != SSP) {
    return bad("staleness is only meaningful with mode: ssp");
  }
  if (spec.num_workers() < 1 || spec.num_workers() > kMaxNodes) {
    return bad("num_workers must be in 1..", kMaxNodes, ", got ", spec.num_workers());
  }
  if (spec.num_servers() < 1 || spec.num_servers() > kMaxNodes) {
    return bad("num_servers must be in 1..", kMaxNodes, ", got ", spec.num_servers());
  }
  if (spec.log_every_steps() < 1) return bad("log_every_steps must be >= 1");
  if (spec.data().path().empty()) return bad("data.path is required");
  if (spec.data().train_limit() < 0) return bad("data.train_limit must be >= 0");
  if (spec.data().test_limit() < 0) return bad("data.test_limit must be >= 0");
  if (spec.ssp_cache() && spec.mode() != SSP) return bad("ssp_cache needs mode: ssp");
  const StragglerSpec& st = spec.straggler();
  if (!(st.transient_probability() >= 0 && st.transient_probability() <= 1)) {
    return bad("straggler.transient_probability must be in [0, 1], got ",
               st.transient_probability());
  }
  if (st.transient_delay_ms() < 0 || st.transient_delay_ms() > 3600000) {
    return bad("straggler.transient_delay_ms must be in 0..3600000, got ",
               st.transient_delay_ms());
  }
  if (st.persistent_rank() < 0) return bad("straggler.persistent_rank must be >= 0");
  if (!(st.persistent_factor() >= 0 && st.persistent_factor() <= 100)) {
    return bad("straggler.persistent_factor must be in [0, 100] (<= 1 is off), got ",
               st.persistent_factor());
  }
  const CompressionSpec& c = spec.compression();
  if (!Compression_IsValid(c.codec())) return bad("compression.codec: unknown codec ", c.codec());
  if (!(c.topk_ratio() > 0 && c.topk_ratio() <= 1)) {
    return bad("compression.topk_ratio must be in (0, 1], got ", c.topk_ratio());
  }
  if (c.min_elements() < 0) return bad("compression.min_elements must be >= 0");
  if (c.topk_warmup_steps() < 0) {
    return bad("compression.topk_warmup_steps must be >= 0, got ", c.topk_warmup_steps());
  }
  if (c.topk_warmup_start_ratio() != 0 &&
      !(c.topk_warmup_start_ratio() > 0 && c.topk_warmup_start_ratio() <= 1)) {
    return bad("compression.topk_warmup_start_ratio must be in (0, 1], got ",
               c.topk_warmup_start_ratio());
  }
  if (c.topk_warmup_steps() > 0 && c.topk_warmup_start_ratio() < c.topk_ratio()) {
    return bad("compression.topk_warmup_start_ratio must be >= topk_ratio (", c.topk_ratio(),
               ") during a warm-up, got ", c.topk_warmup_start_ratio());
  }
  if (absl::Status st = CheckPreconditioning(c, opt); !st.ok()) return st;
  for (const auto& [name, codec] : c.tensors()) {
    if (name.empty()) return bad("compression.tensors: empty tensor name");
    if (!Compression_IsValid(codec)) {
      return bad("compression.tensors.", name, ": unknown codec ", codec);
    }
  }
  return absl::OkStatus();
}

std::string CompressionName(Compression codec) {
  switch (codec) {
    case COMPRESSION_NONE: return "none";
    case COMPRESSION_FP16: return "fp16";
    case COMPRESSION_BF16: return "bf16";
    case COMPRESSION_TOPK: return "topk";
    case COMPRESSION_ONEBIT: return "onebit";
    default: return absl::StrCat("codec ", static_cast<int>(codec));
  }
}

absl::StatusOr<Compression> ParseCompression(const std::string& name) {
  for (Compression c : {COMPRESSION_NONE, COMPRESSION_FP16, COMPRESSION_BF16, COMPRESSION_TOPK,
                        COMPRESSION_ONEBIT}) {
    if (name == CompressionName(c)) return c;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown compression codec '", name, "' (want none, fp16, bf16, topk or onebit)"));
}

Compression TensorCompression(const CompressionSpec& spec, const TensorSpec& tensor) {
  auto it = spec.tensors().find(tensor.name());
  if (it != spec.tensors().end()) return it->second;
  if (static_cast<int64_t>(tensor.size()) < spec.min_elements()) return COMPRESSION_NONE;
  return spec.codec();
}

bool PreconditionedOnWorker(const CompressionSpec& spec, const TensorSpec& tensor) {
  if (!spec.precondition_on_worker()) return false;
  const Compression codec = TensorCompression(spec, tensor);
  return codec == COMPRESSION_TOPK || codec == COMPRESSION_ONEBIT;
}

absl::Status CheckPreconditioning(const CompressionSpec& compression,
                                  const OptimizerSpec& optimizer) {
  if (!compression.precondition_on_worker()) return absl::OkStatus();
  if (optimizer.kind() != OptimizerSpec::ADAM) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression.precondition_on_worker needs optimizer.type adam, got ",
        OptimizerName(optimizer.kind())));
  }
  if (optimizer.weight_decay() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression.precondition_on_worker needs optimizer.weight_decay 0 (the workers "
        "precondition gradients without seeing the weights), got ",
        optimizer.weight_decay()));
  }
  if (!(optimizer.beta2() >= 0 && optimizer.beta2() < 1) || !(optimizer.epsilon() >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression.precondition_on_worker needs optimizer.beta2 in [0, 1) and "
        "optimizer.epsilon >= 0, got ",
        optimizer.beta2(), " and ", optimizer.epsilon()));
  }
  return absl::OkStatus();
}

double TopKRatioAt(const CompressionSpec& spec, int64_t step) {
  const double target = spec.topk_ratio() > 0 ? spec.topk_ratio() : kDefaultTopKRatio;
  const int64_t steps = spec.topk_warmup_steps();
  if (steps <= 0 || step >= steps) return target;
  const double start = spec.topk_warmup_start_ratio() > 0
                           ? spec.topk_warmup_start_ratio()
                           : std::max(kDefaultTopKWarmupStartRatio, target);
  if (start <= target) return target;
  const double progress = static_cast<double>(std::max<int64_t>(step, 0)) / steps;
  return start * std::pow(target / start, progress);
}

std::string ModeName(ConsistencyMode mode) {
  switch (mode) {
    case SYNC: return "sync";
    case ASYNC: return "async";
    case SSP: return "ssp";
    default: return "unspecified";
  }
}

std::string JobStateName(JobState state) {
  switch (state) {
    case PENDING: return "pending";
    case RUNNING: return "running";
    case SUCCEEDED: return "succeeded";
    case FAILED: return "failed";
    case CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

std::string ModelName(ModelSpec::Kind kind) {
  switch (kind) {
    case ModelSpec::SOFTMAX_REGRESSION: return "softmax_regression";
    case ModelSpec::MLP: return "mlp";
    default: return "unspecified";
  }
}

std::string OptimizerName(OptimizerSpec::Kind kind) {
  switch (kind) {
    case OptimizerSpec::SGD: return "sgd";
    case OptimizerSpec::ADAGRAD: return "adagrad";
    case OptimizerSpec::ADAM: return "adam";
    default: return "unspecified";
  }
}

}  // namespace tessera
