#ifndef TESSERA_COMMON_JOB_SPEC_H_
#define TESSERA_COMMON_JOB_SPEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace tessera {

// The data set installed by Debian's dataset-fashion-mnist package.
inline constexpr char kDefaultDataPath[] = "/usr/share/datasets/fashion-mnist";

// Fills every unset field of `spec` with its documented default:
// name "job", batch_size 64, epochs 1, mode sync, data IDX at kDefaultDataPath,
// seed 1, num_workers 1, num_servers 1, log_every_steps 20; optimizer
// momentum/betas/epsilon/accumulator per optimizer kind; compression
// topk_ratio 0.01 and, when topk_warmup_steps > 0, topk_warmup_start_ratio
// max(0.25, topk_ratio).
void ApplyJobDefaults(JobSpec* spec);

// Checks a spec after ApplyJobDefaults. INVALID_ARGUMENT naming the field
// (as written in YAML, e.g. "optimizer.learning_rate") when something is off.
absl::Status ValidateJobSpec(const JobSpec& spec);

// Lower-case names as written in YAML and printed by the CLI.
std::string ModeName(ConsistencyMode mode);
std::string JobStateName(JobState state);
std::string ModelName(ModelSpec::Kind kind);
std::string OptimizerName(OptimizerSpec::Kind kind);
std::string CompressionName(Compression codec);
// The codec named `name` ("none", "fp16", "bf16", "topk", "onebit");
// INVALID_ARGUMENT listing those for anything else.
absl::StatusOr<Compression> ParseCompression(const std::string& name);

// The codec a tensor travels with under `spec`: its per-tensor entry, else
// NONE below min_elements, else the job's codec.
Compression TensorCompression(const CompressionSpec& spec, const TensorSpec& tensor);

// Whether the workers precondition `tensor` with Adam's second moment
// (CompressionSpec.precondition_on_worker, and the tensor travels TOPK or
// ONEBIT). The servers then apply w -= learning_rate * g to it.
bool PreconditionedOnWorker(const CompressionSpec& spec, const TensorSpec& tensor);

// OK unless compression.precondition_on_worker is set for an optimizer it
// cannot split: anything but adam, or a weight_decay (the workers do not see
// the weights), or a beta2/epsilon the workers' second moment cannot use.
// INVALID_ARGUMENT naming the field otherwise.
absl::Status CheckPreconditioning(const CompressionSpec& compression,
                                  const OptimizerSpec& optimizer);

// The share of a chunk's elements TOPK keeps at push clock `step` (0-based):
// during the warm-up (step < topk_warmup_steps) it decays exponentially from
// topk_warmup_start_ratio to topk_ratio,
//   start * (topk_ratio / start)^(step / topk_warmup_steps),
// afterwards (or with no warm-up) it is topk_ratio. Unset fields read as
// their defaults (topk_ratio 0.01, start max(0.25, topk_ratio)).
double TopKRatioAt(const CompressionSpec& spec, int64_t step);

}  // namespace tessera

#endif  // TESSERA_COMMON_JOB_SPEC_H_
