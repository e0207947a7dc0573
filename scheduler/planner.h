#ifndef TESSERA_SCHEDULER_PLANNER_H_
#define TESSERA_SCHEDULER_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/job.pb.h"

namespace tessera::scheduler {

struct PlannedServer {
  std::string name;
  std::string address;
};

// Places every tensor on the servers as contiguous key ranges: a tensor of at
// least `split_threshold` elements is split evenly over all servers; a smaller
// one goes whole to the server holding the fewest elements so far (ties: the
// earlier server). Every element is owned by exactly one server.
// REQUIRES: !servers.empty().
TensorPlan PlanTensors(const std::vector<TensorSpec>& tensors,
                       const std::vector<PlannedServer>& servers, uint64_t split_threshold);

}  // namespace tessera::scheduler

#endif  // TESSERA_SCHEDULER_PLANNER_H_
