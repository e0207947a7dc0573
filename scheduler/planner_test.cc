#include "scheduler/planner.h"

#include <algorithm>
#include <map>
#include <random>

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

TensorSpec T(const std::string& name, uint64_t size) {
  TensorSpec t;
  t.set_name(name);
  t.set_size(size);
  return t;
}

std::vector<PlannedServer> Servers(int n) {
  std::vector<PlannedServer> s;
  for (int i = 0; i < n; ++i) s.push_back({"s" + std::to_string(i), "a" + std::to_string(i)});
  return s;
}

// Checks every element of every tensor is owned exactly once and returns the
// elements per server.
std::vector<uint64_t> CheckOwnership(const std::vector<TensorSpec>& tensors,
                                     const TensorPlan& plan) {
  std::map<std::string, std::vector<int>> owners;
  for (const TensorSpec& t : tensors) owners[t.name()] = std::vector<int>(t.size(), 0);
  std::vector<uint64_t> load(plan.servers_size());
  for (int i = 0; i < plan.servers_size(); ++i) {
    for (const TensorSlice& slice : plan.servers(i).slices()) {
      EXPECT_LT(slice.begin(), slice.end());
      auto& counts = owners.at(slice.tensor());
      EXPECT_LE(slice.end(), counts.size());
      for (uint64_t k = slice.begin(); k < slice.end() && k < counts.size(); ++k) counts[k]++;
      load[i] += slice.end() - slice.begin();
    }
  }
  for (const auto& [name, counts] : owners) {
    for (size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] != 1) {
        ADD_FAILURE() << name << "[" << k << "] owned " << counts[k] << " times";
        break;
      }
    }
  }
  return load;
}

TEST(PlannerTest, MlpIsOwnedOnceAndBalanced) {
  const std::vector<TensorSpec> tensors = {T("dense0/w", 200704), T("dense0/b", 256),
                                           T("dense1/w", 32768), T("dense1/b", 128),
                                           T("dense2/w", 1280), T("dense2/b", 10)};
  for (int servers : {1, 2, 3, 5}) {
    auto plan = PlanTensors(tensors, Servers(servers));
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->servers_size(), servers);
    ASSERT_EQ(plan->tensors_size(), 6);
    for (int i = 0; i < servers; ++i) {
      EXPECT_EQ(plan->servers(i).server_id(), "s" + std::to_string(i));
      EXPECT_EQ(plan->servers(i).address(), "a" + std::to_string(i));
    }
    const std::vector<uint64_t> load = CheckOwnership(tensors, *plan);
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    EXPECT_LE(*hi - *lo, 1280u) << servers << " servers";  // the largest small tensor
  }
}

TEST(PlannerTest, LargeTensorsSplitEvenlySmallOnesWhole) {
  auto plan = PlanTensors({T("big", 16384), T("small", 16383)}, Servers(2));
  ASSERT_TRUE(plan.ok());
  // big: one contiguous half on each server; small: whole, on one server.
  int big_slices = 0, small_slices = 0;
  for (const ServerSlices& s : plan->servers()) {
    for (const TensorSlice& slice : s.slices()) {
      if (slice.tensor() == "big") {
        ++big_slices;
        EXPECT_EQ(slice.end() - slice.begin(), 8192u);
      } else {
        ++small_slices;
        EXPECT_EQ(slice.begin(), 0u);
        EXPECT_EQ(slice.end(), 16383u);
      }
    }
  }
  EXPECT_EQ(big_slices, 2);
  EXPECT_EQ(small_slices, 1);
}

TEST(PlannerTest, RandomModelsAreOwnedOnceBalancedAndDeterministic) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<TensorSpec> tensors;
    uint64_t largest_small = 0;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      const uint64_t size = rng() % 3 == 0 ? 16384 + rng() % 50000 : 1 + rng() % 5000;
      if (size < 16384) largest_small = std::max(largest_small, size);
      tensors.push_back(T("t" + std::to_string(i), size));
    }
    const int servers = 1 + static_cast<int>(rng() % 4);
    auto plan = PlanTensors(tensors, Servers(servers));
    ASSERT_TRUE(plan.ok());
    const std::vector<uint64_t> load = CheckOwnership(tensors, *plan);
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    EXPECT_LE(*hi - *lo, std::max<uint64_t>(largest_small, 1)) << "trial " << trial;
    EXPECT_EQ(PlanTensors(tensors, Servers(servers))->SerializeAsString(),
              plan->SerializeAsString());
  }
}

TEST(PlannerTest, BadInputIsInvalidArgument) {
  EXPECT_EQ(PlanTensors({T("a", 1)}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanTensors({}, Servers(1)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanTensors({T("", 1)}, Servers(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto twice = PlanTensors({T("a", 1), T("a", 2)}, Servers(1));
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("'a'"), absl::string_view::npos);
  EXPECT_EQ(PlanTensors({T("a", 0)}, Servers(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::scheduler
