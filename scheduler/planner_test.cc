#include "scheduler/planner.h"

#include <map>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

TensorSpec T(const std::string& name, uint64_t size) {
  TensorSpec t;
  t.set_name(name);
  t.set_size(size);
  return t;
}

TEST(PlannerTest, EveryElementOwnedOnceAndLoadBalanced) {
  const std::vector<TensorSpec> tensors = {T("dense0/w", 200704), T("dense0/b", 256),
                                           T("dense1/w", 32768), T("dense1/b", 128),
                                           T("dense2/w", 1280), T("dense2/b", 10)};
  for (int servers : {1, 2, 3}) {
    std::vector<PlannedServer> s;
    for (int i = 0; i < servers; ++i) s.push_back({"s" + std::to_string(i), "a" + std::to_string(i)});
    TensorPlan plan = PlanTensors(tensors, s, 16384);
    ASSERT_EQ(plan.servers_size(), servers);
    std::map<std::string, std::vector<int>> owners;
    for (const TensorSpec& t : tensors) owners[t.name()] = std::vector<int>(t.size(), 0);
    std::vector<uint64_t> load(servers);
    for (int i = 0; i < servers; ++i) {
      EXPECT_EQ(plan.servers(i).address(), s[i].address);
      for (const TensorSlice& slice : plan.servers(i).slices()) {
        for (uint64_t k = slice.begin(); k < slice.end(); ++k) owners[slice.tensor()][k]++;
        load[i] += slice.end() - slice.begin();
      }
    }
    for (const auto& [name, counts] : owners) {
      for (int c : counts) ASSERT_EQ(c, 1) << name;
    }
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    EXPECT_LE(*hi - *lo, 1280u) << servers << " servers";
  }
}

}  // namespace
}  // namespace tessera::scheduler
