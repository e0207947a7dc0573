#ifndef TESSERA_TOOLS_JOB_YAML_H_
#define TESSERA_TOOLS_JOB_YAML_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/job.pb.h"

namespace tessera::tools {

// Parses a job spec written as YAML (see README "Job spec"). Strict: an
// unknown key, a value of the wrong type or an unknown enum name is an
// INVALID_ARGUMENT naming the key and line. Defaults are applied and the
// result validated (common/job_spec.h), so a returned spec is ready to submit.
absl::StatusOr<JobSpec> ParseJobYaml(absl::string_view text);

// Reads and parses a YAML file; the error names the file.
absl::StatusOr<JobSpec> LoadJobYaml(const std::string& path);

// Renders a spec as the YAML ParseJobYaml reads.
std::string JobSpecToYaml(const JobSpec& spec);

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_JOB_YAML_H_
