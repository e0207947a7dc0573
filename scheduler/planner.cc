#include "scheduler/planner.h"

#include <algorithm>

#include "common/range.h"

namespace tessera::scheduler {

TensorPlan PlanTensors(const std::vector<TensorSpec>& tensors,
                       const std::vector<PlannedServer>& servers, uint64_t split_threshold) {
  TensorPlan plan;
  std::vector<uint64_t> load(servers.size(), 0);
  for (const PlannedServer& s : servers) {
    ServerSlices* out = plan.add_servers();
    out->set_server_id(s.name);
    out->set_address(s.address);
  }
  auto add = [&](size_t server, const TensorSpec& t, Range r) {
    TensorSlice* slice = plan.mutable_servers(static_cast<int>(server))->add_slices();
    slice->set_tensor(t.name());
    slice->set_begin(r.begin);
    slice->set_end(r.end);
    load[server] += r.size();
  };
  for (const TensorSpec& t : tensors) {
    *plan.add_tensors() = t;
    if (t.size() == 0) continue;
    if (t.size() >= split_threshold && servers.size() > 1) {
      const std::vector<Range> parts = SplitEvenly(t.size(), static_cast<int>(servers.size()));
      for (size_t s = 0; s < parts.size(); ++s) {
        if (!parts[s].empty()) add(s, t, parts[s]);
      }
    } else {
      const size_t s = std::min_element(load.begin(), load.end()) - load.begin();
      add(s, t, Range{0, t.size()});
    }
  }
  return plan;
}

}  // namespace tessera::scheduler
