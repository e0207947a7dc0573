// Property test of the consistency modes of ShardStore: thousands of
// randomized schedules (worker counts, staleness, clocks, relative worker
// speeds, orderings of pulls and pushes, workers dying mid-job) run against
// the store in-process, single-threaded and deterministic (seeded).
//
// A schedule is a sequence of actions chosen at random among the workers that
// can act; a pull is tried with a deadline in the past, so a pull the store
// would hold up returns DEADLINE_EXCEEDED at once and the worker counts as
// blocked. Checked at every step:
//   - SSP/SYNC: a pull at clock c succeeds exactly when every live worker has
//     committed its pushes for clocks < c - s (s = 0 for SYNC), and what it
//     returns includes every one of those pushes (read from the values), so no
//     read misses an update older than c - s; the view clock it reports is
//     covered by the values and its observed staleness is <= s.
//   - ASYNC: a pull never waits.
//   - No schedule deadlocks: while a worker is unfinished, some worker can act
//     (a worker removed from the live set never holds the others).
//   - SYNC: every pull returns exactly the single-process result after c steps
//     of the same optimizer on the rank-ordered mean of the gradients.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/staleness.h"
#include "gtest/gtest.h"
#include "server/optimizer.h"
#include "server/shard_store.h"

namespace tessera::server {
namespace {

constexpr int kSchedules = 1500;

TensorSpec Tensor(const std::string& name, uint64_t size) {
  TensorSpec t;
  t.set_name(name);
  t.set_size(size);
  t.set_init(TensorSpec::ZEROS);
  return t;
}

TensorSlice SliceOf(const std::string& tensor, uint64_t begin, uint64_t end) {
  TensorSlice s;
  s.set_tensor(tensor);
  s.set_begin(begin);
  s.set_end(end);
  return s;
}

struct Schedule {
  ConsistencyMode mode = SYNC;
  int workers = 1;
  int staleness = 0;
  int clocks = 1;
  std::vector<double> speed;  // relative chance of each worker to act
  int kill = -1;              // worker removed from the live set mid-job, or -1
  int kill_after = 0;         // ... after this many actions

  std::string Describe(uint64_t seed) const {
    std::vector<std::string> sp;
    for (double v : speed) sp.push_back(absl::StrCat(v));
    return absl::StrCat("schedule seed ", seed, ": mode ", static_cast<int>(mode), ", ",
                        workers, " workers, staleness ", staleness, ", ", clocks,
                        " clocks, speeds [", absl::StrJoin(sp, ", "), "], kill ", kill,
                        " after ", kill_after, " actions");
  }
};

struct WorkerState {
  int64_t clock = 0;
  bool pulled = false;  // pulled at `clock`, push next
  bool live = true;
};

// Gradient of `worker` at `clock`, element i, for the SYNC schedules:
// arbitrary but fixed.
float SyncGrad(int worker, int64_t clock, int i) {
  return 0.125f * static_cast<float>((worker * 7 + clock * 3 + i * 5) % 11) - 0.5f;
}

// Runs one schedule; returns the first violation, or "" if none.
std::string RunSchedule(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Schedule sc;
  const ConsistencyMode modes[] = {SYNC, ASYNC, SSP, SSP};
  sc.mode = modes[uniform(0, 3)];
  sc.workers = uniform(1, 6);
  sc.staleness = sc.mode == SSP ? uniform(0, 5) : 0;
  sc.clocks = uniform(1, 12);
  for (int w = 0; w < sc.workers; ++w) sc.speed.push_back(uniform(1, 2) == 1 ? 1.0 : uniform(2, 10));
  if (sc.mode != SYNC && sc.workers > 1 && uniform(0, 2) == 0) {
    sc.kill = uniform(0, sc.workers - 1);
    sc.kill_after = uniform(0, 2 * sc.workers * sc.clocks);
  }
  const std::string where = sc.Describe(seed);

  // SYNC: a few elements of random gradients. ASYNC/SSP: one element per
  // worker; worker w's push adds exactly 1 to element w (SGD, learning rate
  // 1, gradient -1), so element w counts the pushes of w a read includes.
  const int n = sc.mode == SYNC ? 5 : sc.workers;
  JobSpec spec;
  spec.set_mode(sc.mode);
  spec.set_staleness(sc.staleness);
  spec.set_seed(3);
  spec.mutable_optimizer()->set_kind(OptimizerSpec::SGD);
  spec.mutable_optimizer()->set_learning_rate(sc.mode == SYNC ? 0.3f : 1.0f);
  if (sc.mode == SYNC) spec.mutable_optimizer()->set_momentum(0.5f);
  // Two slices, so a pull spans slices that may be at different clocks.
  const int split = n / 2;
  std::vector<TensorSlice> slices;
  if (split > 0) slices.push_back(SliceOf("w", 0, split));
  slices.push_back(SliceOf("w", split, n));
  std::vector<int> live(sc.workers);
  for (int w = 0; w < sc.workers; ++w) live[w] = w;

  ShardStore store;
  absl::Status st = store.CreateJob("j", spec, {Tensor("w", n)}, slices, live);
  if (!st.ok()) return absl::StrCat(where, ": CreateJob: ", st.ToString());

  // The single-process reference for SYNC.
  auto optimizer = Optimizer::Create(spec.optimizer());
  if (!optimizer.ok()) return optimizer.status().ToString();
  std::vector<std::vector<float>> reference;  // reference[c]: weights after c steps
  if (sc.mode == SYNC) {
    std::vector<float> w(n, 0.0f);
    auto state = (*optimizer)->NewState(n);
    reference.push_back(w);
    for (int64_t c = 0; c < sc.clocks; ++c) {
      std::vector<float> sum(n);
      for (int i = 0; i < n; ++i) {
        sum[i] = SyncGrad(0, c, i);
        for (int r = 1; r < sc.workers; ++r) sum[i] += SyncGrad(r, c, i);
        if (sc.workers > 1) sum[i] /= static_cast<float>(sc.workers);
      }
      (*optimizer)->Apply(absl::MakeSpan(w), sum, state.get());
      reference.push_back(w);
    }
  }

  std::vector<WorkerState> ws(sc.workers);
  std::vector<int64_t> committed(sc.workers, 0);  // clocks < committed[w] are pushed
  const absl::Time past = absl::InfinitePast();
  std::vector<PulledSlice> out;
  int actions = 0;
  auto is_done = [&](int w) { return !ws[w].live || ws[w].clock >= sc.clocks; };
  while (true) {
    if (sc.kill >= 0 && ws[sc.kill].live && actions >= sc.kill_after) {
      ws[sc.kill].live = false;
      live.erase(std::find(live.begin(), live.end(), sc.kill));
      st = store.SetLiveWorkers("j", live);
      if (!st.ok()) return absl::StrCat(where, ": SetLiveWorkers: ", st.ToString());
    }
    // Workers that can act, weighted by speed; a blocked puller is retried.
    std::vector<int> pending;
    for (int w = 0; w < sc.workers; ++w) {
      if (!is_done(w)) pending.push_back(w);
    }
    if (pending.empty()) break;
    std::vector<double> weights;
    for (int w : pending) weights.push_back(sc.speed[w]);
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    // Try workers in a random order starting from the pick until one acts.
    const size_t first = static_cast<size_t>(pick(rng));
    bool acted = false;
    for (size_t k = 0; k < pending.size() && !acted; ++k) {
      const int w = pending[(first + k) % pending.size()];
      WorkerState& me = ws[w];
      if (me.pulled) {
        auto session = store.BeginPush("j", w, me.clock);
        if (!session.ok()) return absl::StrCat(where, ": BeginPush: ", session.status().ToString());
        st = absl::OkStatus();
        std::vector<float> g(n, 0.0f);
        if (sc.mode == SYNC) {
          for (int i = 0; i < n; ++i) g[i] = SyncGrad(w, me.clock, i);
        } else {
          g[w] = -1.0f;
        }
        // One chunk per slice, as the PS client sends them.
        for (const TensorSlice& ts : slices) {
          if (st.ok()) {
            st = (*session)->AddChunk("w", ts.begin(),
                                      reinterpret_cast<const char*>(g.data() + ts.begin()),
                                      (ts.end() - ts.begin()) * sizeof(float));
          }
        }
        if (st.ok()) st = (*session)->Commit();
        if (!st.ok()) return absl::StrCat(where, ": push of ", w, " at ", me.clock, ": ", st.ToString());
        committed[w] = me.clock + 1;
        ++me.clock;
        me.pulled = false;
        acted = true;
        continue;
      }
      const int64_t c = me.clock;
      const int64_t bound = c - sc.staleness;  // clocks < bound must be in
      bool should_wait = false;
      if (sc.mode != ASYNC) {
        for (int v : live) should_wait = should_wait || committed[v] < bound;
      }
      st = store.Pull("j", w, c, slices, past, &out);
      if (st.code() == absl::StatusCode::kDeadlineExceeded) {
        if (!should_wait) {
          return absl::StrCat(where, ": pull of worker ", w, " at clock ", c,
                              " waited though every live worker has reached clock ", bound);
        }
        continue;  // blocked: try another worker
      }
      if (!st.ok()) return absl::StrCat(where, ": pull: ", st.ToString());
      if (should_wait) {
        return absl::StrCat(where, ": pull of worker ", w, " at clock ", c,
                            " did not wait for a live worker behind clock ", bound);
      }
      std::vector<float> values;
      int64_t view = std::numeric_limits<int64_t>::max();
      for (const PulledSlice& p : out) {
        values.insert(values.end(), p.values.begin(), p.values.end());
        view = std::min(view, p.view_clock);
      }
      if (sc.mode == SYNC) {
        if (values != reference[c]) {
          return absl::StrCat(where, ": sync pull at clock ", c,
                              " differs from the single-process result");
        }
        if (view != c - 1) return absl::StrCat(where, ": sync view clock ", view, " at clock ", c);
      } else {
        for (int v : live) {
          const int64_t included = static_cast<int64_t>(values[v]);
          if (sc.mode == SSP && included < bound) {
            return absl::StrCat(where, ": pull of worker ", w, " at clock ", c,
                                " includes ", included, " pushes of worker ", v,
                                "; staleness ", sc.staleness, " needs ", bound);
          }
          if (included < view + 1) {
            return absl::StrCat(where, ": view clock ", view, " claims pushes of worker ", v,
                                " that are not in the values (", included, ")");
          }
        }
        if (sc.mode == SSP && ObservedStaleness(c, view) > sc.staleness) {
          return absl::StrCat(where, ": observed staleness ", ObservedStaleness(c, view),
                              " > ", sc.staleness);
        }
      }
      me.pulled = true;
      acted = true;
    }
    if (!acted) {
      return absl::StrCat(where, ": deadlock: every unfinished worker is blocked");
    }
    ++actions;
  }
  // The store's histogram counts every pull, all within the bound in SSP/SYNC.
  auto stats = store.Stats("j");
  if (!stats.ok()) return stats.status().ToString();
  uint64_t pulls = 0;
  for (size_t i = 0; i < stats->staleness_histogram.size(); ++i) {
    pulls += stats->staleness_histogram[i];
    if (sc.mode != ASYNC && static_cast<int>(i) > sc.staleness && stats->staleness_histogram[i] > 0) {
      return absl::StrCat(where, ": histogram has ", stats->staleness_histogram[i],
                          " pulls of staleness ", i);
    }
  }
  if (pulls != stats->pulls) {
    return absl::StrCat(where, ": histogram counts ", pulls, " pulls of ", stats->pulls);
  }
  return "";
}

TEST(ConsistencyPropertyTest, RandomSchedulesKeepTheStalenessBoundAndSyncEquivalence) {
  int failures = 0;
  for (uint64_t seed = 1; seed <= kSchedules && failures < 5; ++seed) {
    const std::string error = RunSchedule(seed);
    if (!error.empty()) {
      ADD_FAILURE() << error;
      ++failures;
    }
  }
}

TEST(ConsistencyPropertyTest, ObservedStalenessIsDefinedAsDocumented) {
  EXPECT_EQ(ObservedStaleness(0, -1), 0);
  EXPECT_EQ(ObservedStaleness(5, 4), 0);
  EXPECT_EQ(ObservedStaleness(5, 1), 3);
  EXPECT_EQ(ObservedStaleness(5, 7), 0);
}

}  // namespace
}  // namespace tessera::server
