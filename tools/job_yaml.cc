#include "tools/job_yaml.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace tessera::tools {
namespace {

std::string Where(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return "";
  return absl::StrCat(" (line ", mark.line + 1, ")");
}

absl::Status Bad(const YAML::Node& node, const std::string& key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", what, Where(node)));
}

// Checks that `map` is a mapping with only `allowed` keys.
absl::Status CheckKeys(const YAML::Node& map, const std::string& path,
                       const std::set<std::string>& allowed) {
  if (!map.IsMap()) {
    return Bad(map, path.empty() ? "job" : path, "expected a mapping of key: value");
  }
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (allowed.count(key) == 0) {
      return Bad(kv.first, path.empty() ? key : absl::StrCat(path, ".", key),
                 absl::StrCat("unknown key; expected one of ", absl::StrJoin(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Number(const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) return Bad(node, key, "expected a number");
  double v = 0;
  if (!YAML::convert<double>::decode(node, v) || !std::isfinite(v)) {
    return Bad(node, key, absl::StrCat("expected a number, got '", node.Scalar(), "'"));
  }
  return v;
}

absl::StatusOr<int64_t> Integer(const YAML::Node& node, const std::string& key, int64_t lo,
                                int64_t hi) {
  TESSERA_ASSIGN_OR_RETURN(double v, Number(node, key));
  if (v != std::floor(v)) return Bad(node, key, absl::StrCat("expected an integer, got ", v));
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi)) {
    return Bad(node, key, absl::StrCat("must be in ", lo, "..", hi, ", got ", v));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<bool> Bool(const YAML::Node& node, const std::string& key) {
  bool v = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v)) {
    return Bad(node, key, "expected true or false");
  }
  return v;
}

absl::StatusOr<std::string> String(const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) return Bad(node, key, "expected a string");
  return node.Scalar();
}

template <typename Enum>
absl::StatusOr<Enum> Choice(const YAML::Node& node, const std::string& key,
                            std::initializer_list<std::pair<const char*, Enum>> choices) {
  TESSERA_ASSIGN_OR_RETURN(std::string v, String(node, key));
  std::vector<std::string> names;
  for (const auto& [name, value] : choices) {
    if (v == name) return value;
    names.push_back(name);
  }
  return Bad(node, key, absl::StrCat("unknown value '", v, "'; expected ", absl::StrJoin(names, ", ")));
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

absl::Status ParseModel(const YAML::Node& node, ModelSpec* model) {
  TESSERA_RETURN_IF_ERROR(CheckKeys(node, "model", {"type", "hidden_layers"}));
  if (node["type"]) {
    TESSERA_ASSIGN_OR_RETURN(ModelSpec::Kind kind,
                             Choice<ModelSpec::Kind>(node["type"], "model.type",
                                                     {{"softmax_regression", ModelSpec::SOFTMAX_REGRESSION},
                                                      {"mlp", ModelSpec::MLP}}));
    model->set_kind(kind);
  }
  if (const YAML::Node layers = node["hidden_layers"]) {
    if (!layers.IsSequence()) return Bad(layers, "model.hidden_layers", "expected a list like [256, 128]");
    for (size_t i = 0; i < layers.size(); ++i) {
      TESSERA_ASSIGN_OR_RETURN(int64_t w, Integer(layers[i], absl::StrCat("model.hidden_layers[", i, "]"),
                                                  1, 65536));
      model->add_hidden_layers(static_cast<int32_t>(w));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseOptimizer(const YAML::Node& node, OptimizerSpec* opt) {
  TESSERA_RETURN_IF_ERROR(CheckKeys(node, "optimizer",
                                    {"type", "learning_rate", "momentum", "nesterov", "beta1",
                                     "beta2", "epsilon", "weight_decay", "initial_accumulator"}));
  if (node["type"]) {
    TESSERA_ASSIGN_OR_RETURN(OptimizerSpec::Kind kind,
                             Choice<OptimizerSpec::Kind>(node["type"], "optimizer.type",
                                                         {{"sgd", OptimizerSpec::SGD},
                                                          {"adagrad", OptimizerSpec::ADAGRAD},
                                                          {"adam", OptimizerSpec::ADAM}}));
    opt->set_kind(kind);
  }
  struct FloatField {
    const char* key;
    void (OptimizerSpec::*set)(float);
  };
  for (const FloatField& f : {FloatField{"learning_rate", &OptimizerSpec::set_learning_rate},
                              FloatField{"momentum", &OptimizerSpec::set_momentum},
                              FloatField{"beta1", &OptimizerSpec::set_beta1},
                              FloatField{"beta2", &OptimizerSpec::set_beta2},
                              FloatField{"epsilon", &OptimizerSpec::set_epsilon},
                              FloatField{"weight_decay", &OptimizerSpec::set_weight_decay},
                              FloatField{"initial_accumulator", &OptimizerSpec::set_initial_accumulator}}) {
    if (const YAML::Node v = node[f.key]) {
      TESSERA_ASSIGN_OR_RETURN(double d, Number(v, absl::StrCat("optimizer.", f.key)));
      (opt->*f.set)(static_cast<float>(d));
    }
  }
  if (const YAML::Node v = node["nesterov"]) {
    TESSERA_ASSIGN_OR_RETURN(bool b, Bool(v, "optimizer.nesterov"));
    opt->set_nesterov(b);
  }
  return absl::OkStatus();
}

absl::Status ParseData(const YAML::Node& node, DataSpec* data) {
  TESSERA_RETURN_IF_ERROR(CheckKeys(node, "data", {"format", "path", "train_limit", "test_limit"}));
  if (node["format"]) {
    TESSERA_ASSIGN_OR_RETURN(DataSpec::Format f,
                             Choice<DataSpec::Format>(node["format"], "data.format", {{"idx", DataSpec::IDX}}));
    data->set_format(f);
  }
  if (node["path"]) {
    TESSERA_ASSIGN_OR_RETURN(std::string p, String(node["path"], "data.path"));
    data->set_path(p);
  }
  if (node["train_limit"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["train_limit"], "data.train_limit", 0, 1LL << 40));
    data->set_train_limit(v);
  }
  if (node["test_limit"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["test_limit"], "data.test_limit", 0, 1LL << 40));
    data->set_test_limit(v);
  }
  return absl::OkStatus();
}

absl::Status ParseStraggler(const YAML::Node& node, StragglerSpec* st) {
  TESSERA_RETURN_IF_ERROR(CheckKeys(node, "straggler",
                                    {"transient_probability", "transient_delay_ms",
                                     "persistent_rank", "persistent_factor"}));
  if (node["transient_probability"]) {
    TESSERA_ASSIGN_OR_RETURN(double p, Number(node["transient_probability"],
                                              "straggler.transient_probability"));
    st->set_transient_probability(p);
  }
  if (node["transient_delay_ms"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["transient_delay_ms"],
                                                "straggler.transient_delay_ms", 0, 3600000));
    st->set_transient_delay_ms(static_cast<int32_t>(v));
  }
  if (node["persistent_rank"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["persistent_rank"],
                                                "straggler.persistent_rank", 0, 1023));
    st->set_persistent_rank(static_cast<int32_t>(v));
  }
  if (node["persistent_factor"]) {
    TESSERA_ASSIGN_OR_RETURN(double f, Number(node["persistent_factor"],
                                              "straggler.persistent_factor"));
    st->set_persistent_factor(static_cast<float>(f));
  }
  return absl::OkStatus();
}

absl::StatusOr<Compression> Codec(const YAML::Node& node, const std::string& key) {
  return Choice<Compression>(node, key,
                             {{"none", COMPRESSION_NONE},
                              {"fp16", COMPRESSION_FP16},
                              {"bf16", COMPRESSION_BF16},
                              {"topk", COMPRESSION_TOPK},
                              {"onebit", COMPRESSION_ONEBIT}});
}

absl::Status ParseCompression(const YAML::Node& node, CompressionSpec* c) {
  TESSERA_RETURN_IF_ERROR(
      CheckKeys(node, "compression", {"codec", "topk_ratio", "min_elements", "tensors",
                                      "topk_warmup_steps", "topk_warmup_start_ratio",
                                      "precondition_on_worker"}));
  if (node["codec"]) {
    TESSERA_ASSIGN_OR_RETURN(Compression codec, Codec(node["codec"], "compression.codec"));
    c->set_codec(codec);
  }
  if (node["topk_ratio"]) {
    TESSERA_ASSIGN_OR_RETURN(double r, Number(node["topk_ratio"], "compression.topk_ratio"));
    if (!(r > 0 && r <= 1)) return Bad(node["topk_ratio"], "compression.topk_ratio", "must be in (0, 1]");
    c->set_topk_ratio(r);
  }
  if (node["min_elements"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["min_elements"], "compression.min_elements",
                                                0, int64_t{1} << 40));
    c->set_min_elements(v);
  }
  if (node["topk_warmup_steps"]) {
    TESSERA_ASSIGN_OR_RETURN(int64_t v, Integer(node["topk_warmup_steps"],
                                                "compression.topk_warmup_steps", 0,
                                                int64_t{1} << 40));
    c->set_topk_warmup_steps(v);
  }
  if (node["topk_warmup_start_ratio"]) {
    TESSERA_ASSIGN_OR_RETURN(double r, Number(node["topk_warmup_start_ratio"],
                                              "compression.topk_warmup_start_ratio"));
    if (!(r > 0 && r <= 1)) {
      return Bad(node["topk_warmup_start_ratio"], "compression.topk_warmup_start_ratio",
                 "must be in (0, 1]");
    }
    c->set_topk_warmup_start_ratio(r);
  }
  if (node["precondition_on_worker"]) {
    TESSERA_ASSIGN_OR_RETURN(bool b, Bool(node["precondition_on_worker"],
                                          "compression.precondition_on_worker"));
    c->set_precondition_on_worker(b);
  }
  if (node["tensors"]) {
    const YAML::Node& tensors = node["tensors"];
    if (!tensors.IsMap()) {
      return Bad(tensors, "compression.tensors", "expected a mapping of tensor name: codec");
    }
    for (const auto& kv : tensors) {
      const std::string name = kv.first.as<std::string>();
      TESSERA_ASSIGN_OR_RETURN(Compression codec,
                               Codec(kv.second, absl::StrCat("compression.tensors.", name)));
      (*c->mutable_tensors())[name] = codec;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseJob(const YAML::Node& root, JobSpec* spec) {
  if (!root || root.IsNull()) return absl::InvalidArgumentError("the job spec is empty");
  TESSERA_RETURN_IF_ERROR(CheckKeys(root, "",
                                    {"name", "model", "optimizer", "batch_size", "epochs",
                                     "max_steps", "mode", "staleness", "data", "seed",
                                     "num_workers", "num_servers", "log_every_steps",
                                     "straggler", "ssp_cache", "compression"}));
  if (!root["model"]) return absl::InvalidArgumentError("model: required (e.g. model: {type: mlp, hidden_layers: [256, 128]})");
  if (!root["optimizer"]) return absl::InvalidArgumentError("optimizer: required (e.g. optimizer: {type: adam, learning_rate: 0.001})");
  TESSERA_RETURN_IF_ERROR(ParseModel(root["model"], spec->mutable_model()));
  TESSERA_RETURN_IF_ERROR(ParseOptimizer(root["optimizer"], spec->mutable_optimizer()));
  if (root["data"]) TESSERA_RETURN_IF_ERROR(ParseData(root["data"], spec->mutable_data()));
  if (root["ssp_cache"]) {
    TESSERA_ASSIGN_OR_RETURN(bool b, Bool(root["ssp_cache"], "ssp_cache"));
    spec->set_ssp_cache(b);
  }
  if (root["straggler"]) {
    TESSERA_RETURN_IF_ERROR(ParseStraggler(root["straggler"], spec->mutable_straggler()));
  }
  if (root["compression"]) {
    TESSERA_RETURN_IF_ERROR(ParseCompression(root["compression"], spec->mutable_compression()));
  }
  if (root["name"]) {
    TESSERA_ASSIGN_OR_RETURN(std::string name, String(root["name"], "name"));
    spec->set_name(name);
  }
  if (root["mode"]) {
    TESSERA_ASSIGN_OR_RETURN(ConsistencyMode mode,
                             Choice<ConsistencyMode>(root["mode"], "mode",
                                                     {{"sync", SYNC}, {"async", ASYNC}, {"ssp", SSP}}));
    spec->set_mode(mode);
  }
  struct IntField {
    const char* key;
    int64_t lo, hi;
    std::function<void(int64_t)> set;
  };
  const IntField ints[] = {
      {"batch_size", 1, 1 << 20, [&](int64_t v) { spec->set_batch_size(static_cast<int32_t>(v)); }},
      {"epochs", 1, 100000, [&](int64_t v) { spec->set_epochs(static_cast<int32_t>(v)); }},
      {"max_steps", 0, 1LL << 40, [&](int64_t v) { spec->set_max_steps(v); }},
      {"staleness", 0, 1000000, [&](int64_t v) { spec->set_staleness(static_cast<int32_t>(v)); }},
      {"seed", 0, std::numeric_limits<int64_t>::max(), [&](int64_t v) { spec->set_seed(v); }},
      {"num_workers", 1, 1024, [&](int64_t v) { spec->set_num_workers(static_cast<int32_t>(v)); }},
      {"num_servers", 1, 1024, [&](int64_t v) { spec->set_num_servers(static_cast<int32_t>(v)); }},
      {"log_every_steps", 1, kInt32Max, [&](int64_t v) { spec->set_log_every_steps(static_cast<int32_t>(v)); }},
  };
  for (const IntField& f : ints) {
    if (const YAML::Node v = root[f.key]) {
      TESSERA_ASSIGN_OR_RETURN(int64_t i, Integer(v, f.key, f.lo, f.hi));
      f.set(i);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobYaml(absl::string_view text) {
  JobSpec spec;
  try {
    YAML::Node root = YAML::Load(std::string(text));
    TESSERA_RETURN_IF_ERROR(ParseJob(root, &spec));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid YAML: ", e.what()));
  }
  ApplyJobDefaults(&spec);
  TESSERA_RETURN_IF_ERROR(ValidateJobSpec(spec));
  return spec;
}

absl::StatusOr<JobSpec> LoadJobYaml(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  absl::StatusOr<JobSpec> spec = ParseJobYaml(text);
  if (!spec.ok()) return Annotate(spec.status(), path);
  return spec;
}

std::string JobSpecToYaml(const JobSpec& spec) {
  std::ostringstream out;
  out << "name: " << spec.name() << "\n";
  out << "model:\n  type: " << ModelName(spec.model().kind()) << "\n";
  if (spec.model().hidden_layers_size() > 0) {
    out << "  hidden_layers: [" << absl::StrJoin(spec.model().hidden_layers(), ", ") << "]\n";
  }
  const OptimizerSpec& o = spec.optimizer();
  out << "optimizer:\n  type: " << OptimizerName(o.kind()) << "\n  learning_rate: " << o.learning_rate() << "\n";
  if (o.momentum() != 0) out << "  momentum: " << o.momentum() << "\n";
  if (o.nesterov()) out << "  nesterov: true\n";
  if (o.kind() == OptimizerSpec::ADAM) out << "  beta1: " << o.beta1() << "\n  beta2: " << o.beta2() << "\n";
  if (o.epsilon() != 0) out << "  epsilon: " << o.epsilon() << "\n";
  if (o.weight_decay() != 0) out << "  weight_decay: " << o.weight_decay() << "\n";
  if (o.kind() == OptimizerSpec::ADAGRAD) out << "  initial_accumulator: " << o.initial_accumulator() << "\n";
  out << "batch_size: " << spec.batch_size() << "\nepochs: " << spec.epochs() << "\n";
  if (spec.max_steps() != 0) out << "max_steps: " << spec.max_steps() << "\n";
  out << "mode: " << ModeName(spec.mode()) << "\n";
  if (spec.mode() == SSP) out << "staleness: " << spec.staleness() << "\n";
  if (spec.ssp_cache()) out << "ssp_cache: true\n";
  out << "data:\n  format: idx\n  path: " << spec.data().path() << "\n";
  if (spec.data().train_limit() != 0) out << "  train_limit: " << spec.data().train_limit() << "\n";
  if (spec.data().test_limit() != 0) out << "  test_limit: " << spec.data().test_limit() << "\n";
  out << "seed: " << spec.seed() << "\nnum_workers: " << spec.num_workers()
      << "\nnum_servers: " << spec.num_servers() << "\nlog_every_steps: " << spec.log_every_steps() << "\n";
  if (spec.has_straggler()) {
    const StragglerSpec& st = spec.straggler();
    out << "straggler:\n  transient_probability: " << st.transient_probability()
        << "\n  transient_delay_ms: " << st.transient_delay_ms()
        << "\n  persistent_rank: " << st.persistent_rank()
        << "\n  persistent_factor: " << st.persistent_factor() << "\n";
  }
  if (spec.has_compression()) {
    const CompressionSpec& c = spec.compression();
    out << "compression:\n  codec: " << CompressionName(c.codec())
        << "\n  topk_ratio: " << c.topk_ratio() << "\n  min_elements: " << c.min_elements()
        << "\n";
    if (c.precondition_on_worker()) out << "  precondition_on_worker: true\n";
    if (c.topk_warmup_steps() != 0) {
      out << "  topk_warmup_steps: " << c.topk_warmup_steps()
          << "\n  topk_warmup_start_ratio: " << c.topk_warmup_start_ratio() << "\n";
    }
    if (!c.tensors().empty()) {
      out << "  tensors:\n";
      std::map<std::string, Compression> sorted(c.tensors().begin(), c.tensors().end());
      for (const auto& [name, codec] : sorted) {
        out << "    " << name << ": " << CompressionName(codec) << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace tessera::tools
