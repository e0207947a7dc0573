#include "scheduler/planner.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/range.h"

namespace tessera::scheduler {
namespace {

// Far above any model this system trains; keeps the sums below from overflowing.
constexpr uint64_t kMaxTensorElements = uint64_t{1} << 40;

}  // namespace

absl::StatusOr<TensorPlan> PlanTensors(const std::vector<TensorSpec>& tensors,
                                       const std::vector<PlannedServer>& servers,
                                       uint64_t split_threshold) {
  if (servers.empty()) return absl::InvalidArgumentError("a plan needs at least one server");
  if (tensors.empty()) return absl::InvalidArgumentError("no tensors declared");
  std::set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorSpec& t = tensors[i];
    if (t.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tensors[", i, "] has no name"));
    }
    if (!names.insert(t.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors[", i, "]: tensor '", t.name(), "' is declared twice"));
    }
    if (t.size() == 0 || t.size() > kMaxTensorElements) {
      return absl::InvalidArgumentError(absl::StrCat("tensors[", i, "] '", t.name(), "': size ",
                                                     t.size(), " must be in 1..",
                                                     kMaxTensorElements));
    }
  }

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
  std::vector<size_t> order(servers.size());
  for (const TensorSpec& t : tensors) {
    *plan.add_tensors() = t;
    if (t.size() >= split_threshold && servers.size() > 1) {
      // SplitEvenly makes the first parts one element longer; hand those to
      // the least loaded servers so that many split tensors do not pile their
      // extra elements onto server 0.
      const std::vector<Range> parts = SplitEvenly(t.size(), static_cast<int>(servers.size()));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return load[a] < load[b]; });
      for (size_t p = 0; p < parts.size(); ++p) {
        if (!parts[p].empty()) add(order[p], t, parts[p]);
      }
    } else {
      const size_t s = std::min_element(load.begin(), load.end()) - load.begin();
      add(s, t, Range{0, t.size()});
    }
  }
  return plan;
}

}  // namespace tessera::scheduler
