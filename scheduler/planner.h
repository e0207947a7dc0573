#ifndef TESSERA_SCHEDULER_PLANNER_H_
#define TESSERA_SCHEDULER_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace tessera::scheduler {

// Tensors of at least this many elements are split over all of a job's servers.
inline constexpr uint64_t kDefaultSplitThreshold = 16384;

// A server as the planner sees it; `name` becomes ServerSlices.server_id.
struct PlannedServer {
  std::string name;
  std::string address;
};

// Places every tensor on the servers as contiguous key ranges. A tensor of at
// least `split_threshold` elements is split evenly over all servers (each
// server gets one contiguous part; the parts one element longer go to the
// least loaded servers); a smaller one goes whole to the server holding the
// fewest elements so far (ties: the earlier server). The result is
// deterministic; every element of every tensor is owned by exactly one server,
// and server loads differ by at most the largest unsplit tensor (plus one
// element per split tensor). plan.servers follows the order of `servers`.
// INVALID_ARGUMENT when there are no servers or no tensors, or a tensor has
// an empty or duplicate name or no elements.
absl::StatusOr<TensorPlan> PlanTensors(const std::vector<TensorSpec>& tensors,
                                       const std::vector<PlannedServer>& servers,
                                       uint64_t split_threshold = kDefaultSplitThreshold);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_PLANNER_H_
