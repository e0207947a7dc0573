#include "server/shard_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <iterator>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/initializer.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "common/keyed_executor.h"
#include "server/optimizer.h"

namespace tessera::server {
namespace internal {

// One worker's gradient for a slice, as pushed: elements copied into
// `storage` (decoded chunks) or left in the network buffers they arrived in
// (float32 chunks, read once by the optimizer step; see HeldBytes). Reused
// across pushes: owned by the slice's pool while idle, by a PushSession while
// staging and by the slice's pending map while a SYNC step waits for the
// other workers.
struct StagingBuffer {
  explicit StagingBuffer(size_t n) : size(n) {}

  // Where copied elements go; allocated on first use and kept. Not zeroed:
  // a commit needs every element written (covered_count), and zeroing a large
  // slice's buffer costs a pass over memory for nothing.
  float* values() {
    if (storage == nullptr) storage.reset(new float[size]);
    return storage.get();
  }

  void Reset() {
    covered.clear();
    covered_count = 0;
    held.clear();
  }

  // Calls fn(first, bytes, count) for runs of the gradient that together
  // cover elements [begin, begin + n), in order: `count` little-endian
  // float32 values at `bytes` (any alignment) are elements [first, first +
  // count). Held elements are passed where they lie in the network buffers;
  // one split between two buffers, alone, from a copy.
  // REQUIRES: every element was written.
  void ForEachRun(uint64_t begin, size_t n,
                  absl::FunctionRef<void(uint64_t first, const char* bytes, size_t count)> fn)
      const {
    const uint64_t end = begin + n;
    // The first held run ending after `begin`.
    auto it = held.upper_bound(begin);
    if (it != held.begin() && std::prev(it)->first + std::prev(it)->second.count > begin) --it;
    for (uint64_t p = begin; p < end;) {
      if (it == held.end() || it->first > p) {
        const uint64_t next = it == held.end() ? end : std::min(end, it->first);
        fn(p, reinterpret_cast<const char*>(storage.get() + p), next - p);
        p = next;
        continue;
      }
      const HeldRun& run = it->second;
      const uint64_t k = std::min(end, it->first + run.count) - p;
      // A value split between pieces is gathered here; the run starts and
      // ends on whole values, so none is left over.
      char split[sizeof(float)];
      size_t have = 0;
      run.bytes->ForEachPiece(
          (p - it->first) * sizeof(float), k * sizeof(float),
          [&](const char* data, size_t len) {
            if (have > 0) {
              const size_t take = std::min(len, sizeof(float) - have);
              std::memcpy(split + have, data, take);
              have += take;
              data += take;
              len -= take;
              if (have < sizeof(float)) return;
              fn(p++, split, 1);
              have = 0;
            }
            const size_t whole = len / sizeof(float);
            if (whole > 0) fn(p, data, whole);
            p += whole;
            have = len % sizeof(float);
            std::memcpy(split, data + whole * sizeof(float), have);
          });
      ++it;
    }
  }

  const size_t size;  // elements: the slice's
  std::unique_ptr<float[]> storage;
  // Elements left in network buffers, by slice-local first element.
  struct HeldRun {
    uint64_t count;
    std::shared_ptr<const HeldBytes> bytes;  // little-endian float32
  };
  std::map<uint64_t, HeldRun> held;
  // Elements written so far, as merged intervals of slice-local offsets.
  std::map<uint64_t, uint64_t> covered;
  uint64_t covered_count = 0;
};

// One optimizer step waiting to run: ASYNC/SSP one worker's gradient, SYNC
// every live worker's for one clock, in rank order.
struct QueuedStep {
  int worker = -1;   // ASYNC/SSP: whose push, for the clock table
  int64_t clock = -1;
  std::vector<std::unique_ptr<StagingBuffer>> grads;
};

struct Slice {
  Slice(std::string tensor_name, Range r, size_t idx, uint64_t key, const Optimizer* opt)
      : tensor(std::move(tensor_name)), range(r), index(idx), apply_key(key), optimizer(opt) {}

  std::string Name() const {
    return absl::StrCat("'", tensor, "' [", range.begin, ",", range.end, ")");
  }

  // Constant after construction.
  const std::string tensor;
  const Range range;
  const size_t index;  // position in Job::slices; multi-slice locks go in this order
  const uint64_t apply_key;  // picks the executor thread that runs its optimizer steps
  const Optimizer* const optimizer;  // the one for this tensor; owned by the Job

  absl::Mutex mu;
  absl::CondVar changed;  // version, live set or closed changed
  std::vector<float> weights ABSL_GUARDED_BY(mu);
  std::unique_ptr<OptimizerState> opt_state ABSL_GUARDED_BY(mu);
  int64_t version ABSL_GUARDED_BY(mu) = 0;  // optimizer steps applied
  // Optimizer steps queued (see QueueStep), and how many of them have run.
  // A pull or Stats waits for the steps queued before it began.
  int64_t steps_queued ABSL_GUARDED_BY(mu) = 0;
  int64_t steps_done ABSL_GUARDED_BY(mu) = 0;
  // Steps that a push's committer runs once it has answered (DeferredStep),
  // in order: the first is the committer's, the slice's later steps queue
  // behind it until it has run them all.
  std::deque<QueuedStep> held_steps ABSL_GUARDED_BY(mu);
  // SYNC: the clock pushes are taken for: version, plus the completed clocks
  // whose steps are still queued.
  int64_t open_clock ABSL_GUARDED_BY(mu) = 0;
  std::vector<int> live ABSL_GUARDED_BY(mu);  // sorted ranks
  // SYNC: gradients committed for open_clock, by rank (so summed in rank order).
  std::map<int, std::unique_ptr<StagingBuffer>> pending ABSL_GUARDED_BY(mu);
  // Clock table: the latest clock of each worker whose push to this slice was
  // applied.
  std::map<int, int64_t> last_clock ABSL_GUARDED_BY(mu);
  std::vector<std::unique_ptr<StagingBuffer>> free_buffers ABSL_GUARDED_BY(mu);
  // A block of the gradients summed for a SYNC step of several workers (ApplyStep).
  std::vector<float> scratch ABSL_GUARDED_BY(mu);
  absl::Status closed ABSL_GUARDED_BY(mu);     // non-OK once dropped or shut down
};

struct Job {
  // Constant after construction.
  std::string id;
  JobSpec spec;
  std::unique_ptr<Optimizer> optimizer;
  KeyedExecutor* executor = nullptr;  // the store's; runs the optimizer steps
  // compression.precondition_on_worker: w -= lr * g, for the tensors whose
  // pushes the workers have already divided by sqrt(v^) + eps. Else null.
  std::unique_ptr<Optimizer> preconditioned;
  std::map<std::string, TensorSpec, std::less<>> tensors;  // every tensor of the job
  std::vector<std::unique_ptr<Slice>> slices;             // sorted by (tensor, begin)
  std::map<std::string, std::vector<Slice*>, std::less<>> by_tensor;

  absl::Mutex mu;  // ordered before every Slice::mu
  std::vector<int> live ABSL_GUARDED_BY(mu);

  // Pushes split over several streams (ShardStore::JoinPush), by (worker,
  // push_id), from their first stream until their last part ends. Held with
  // no other lock. The sessions keep the job alive: DropJob and Shutdown
  // empty the map.
  struct OpenPush {
    std::shared_ptr<PushSession> session;
    int joined = 0;  // streams that arrived
  };
  absl::Mutex pushes_mu;
  std::map<std::pair<int, uint64_t>, OpenPush> open_pushes ABSL_GUARDED_BY(pushes_mu);

  std::atomic<uint64_t> pushes{0};
  std::atomic<uint64_t> pulls{0};
  std::atomic<uint64_t> push_bytes{0};
  std::atomic<uint64_t> pull_bytes{0};
  std::atomic<int64_t> waiting_pulls{0};
  std::array<std::atomic<uint64_t>, kStalenessBuckets> staleness{};

  // The slice of `tensor` holding all of `r`.
  absl::StatusOr<Slice*> FindSlice(absl::string_view tensor, const Range& r,
                                   absl::string_view what) const {
    auto it = by_tensor.find(tensor);
    if (it == by_tensor.end()) {
      if (tensors.find(tensor) == tensors.end()) {
        return absl::NotFoundError(
            absl::StrCat(what, ": job '", id, "' has no tensor '", tensor, "'"));
      }
      return absl::NotFoundError(absl::StrCat(what, ": tensor '", tensor, "' of job '", id,
                                              "' has no slice on this server"));
    }
    for (Slice* s : it->second) {
      if (s->range.Contains(r)) return s;
    }
    std::vector<std::string> held;
    for (const Slice* s : it->second) {
      held.push_back(absl::StrCat("[", s->range.begin, ",", s->range.end, ")"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": elements [", r.begin, ",", r.end, ") of tensor '", tensor,
                     "' are not inside one slice held on this server (held: ",
                     absl::StrJoin(held, ", "), ")"));
  }
};

}  // namespace internal

namespace {

using internal::Job;
using internal::QueuedStep;
using internal::Slice;
using internal::StagingBuffer;

// Idle buffers a slice keeps; more are freed rather than pooled.
constexpr size_t kMaxFreeBuffers = 8;
// Optimizer steps a slice may have queued before a Commit waits for them:
// bounds the staged gradients a fast pusher can pile up.
constexpr int64_t kMaxQueuedSteps = 2;
// Slices up to this many elements run a step on the committing thread when
// none is queued (see QueueStep).
constexpr size_t kInlineStepElements = size_t{64} << 10;
// Slices up to this many elements (4 MiB) in all leave their steps to a
// committer that takes them (DeferredStep) when none is queued. Larger
// steps go to the executor, where they overlap the stream's next reads.
constexpr size_t kHeldStepElements = size_t{1} << 20;
// Past the first, a committer holds no step of fewer elements (16 KiB): it
// costs less to run under the locks the commit holds anyway than to take
// them again. A push of 64 x 1 KiB tensors was answered 12% later, at 18%
// more CPU, with every step held (pushpull.md, item 39).
constexpr size_t kMinHeldStepElements = size_t{4} << 10;

std::string RankList(const std::vector<int>& ranks) {
  return absl::StrCat("[", absl::StrJoin(ranks, ", "), "]");
}

bool IsLive(const std::vector<int>& live, int worker) {
  return std::binary_search(live.begin(), live.end(), worker);
}

std::unique_ptr<StagingBuffer> TakeBuffer(Slice* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->free_buffers.empty()) return std::make_unique<StagingBuffer>(s->range.size());
  std::unique_ptr<StagingBuffer> b = std::move(s->free_buffers.back());
  s->free_buffers.pop_back();
  return b;
}

void ReturnBuffer(Slice* s, std::unique_ptr<StagingBuffer> b)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->free_buffers.size() >= kMaxFreeBuffers) return;
  b->Reset();
  s->free_buffers.push_back(std::move(b));
}

// Whether `worker` may push `clock` to `s` now.
absl::Status CheckPushable(const Job& job, Slice* s, int worker, int64_t clock)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (!s->closed.ok()) return s->closed;
  if (!IsLive(s->live, worker)) {
    return absl::FailedPreconditionError(
        absl::StrCat("push to ", s->Name(), " of job '", job.id, "': worker ", worker,
                     " is not live (live workers: ", RankList(s->live), ")"));
  }
  if (job.spec.mode() == SYNC) {
    if (clock != s->open_clock) {
      return absl::FailedPreconditionError(absl::StrCat(
          "push to ", s->Name(), " of job '", job.id, "': worker ", worker, " pushed clock ",
          clock, " but the slice takes clock ", s->open_clock, " only"));
    }
    if (s->pending.count(worker) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("push to ", s->Name(), " of job '", job.id, "': worker ", worker,
                       " already pushed clock ", clock));
    }
  }
  return absl::OkStatus();
}

// Elements per block of a step that sums gradients: 16 KiB, which stays in
// cache between being summed and being applied.
constexpr size_t kStepBlock = 4096;

// sum[i] += the i-th of `n` little-endian float32 values at `bytes` (any
// alignment).
void AddBytes(const char* __restrict bytes, size_t n, float* __restrict sum) {
  for (size_t i = 0; i < n; ++i) sum[i] += GradientAt(bytes, i);
}

// One optimizer step from `grads` (one per worker, summed in rank order and
// divided by their number when several), reading a gradient still in network
// buffers once, where it lies: one worker's straight into the step, several
// block by block into a sum. Bit for bit the numbers of summing whole buffers
// and then calling Optimizer::Apply.
void ApplyStep(Slice* s, const std::vector<std::unique_ptr<StagingBuffer>>& grads)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  const size_t n = s->range.size();
  float* const w = s->weights.data();
  OptimizerState* const state = s->opt_state.get();
  if (grads.size() == 1) {
    grads[0]->ForEachRun(0, n, [&](uint64_t first, const char* g, size_t count) {
      s->optimizer->ApplyPartBytes(w + first, g, count, state, first);
    });
  } else {
    const size_t block = std::min(n, kStepBlock);
    s->scratch.resize(block);
    float* const sum = s->scratch.data();
    const float count = static_cast<float>(grads.size());
    for (size_t b = 0; b < n; b += block) {
      const size_t m = std::min(block, n - b);
      grads[0]->ForEachRun(b, m, [&](uint64_t first, const char* g, size_t k) {
        std::memcpy(sum + (first - b), g, k * sizeof(float));
      });
      for (size_t r = 1; r < grads.size(); ++r) {
        grads[r]->ForEachRun(b, m, [&](uint64_t first, const char* g, size_t k) {
          AddBytes(g, k, sum + (first - b));
        });
      }
      for (size_t i = 0; i < m; ++i) sum[i] /= count;
      s->optimizer->ApplyPart(w + b, sum, m, state, b);
    }
  }
  s->optimizer->FinishStep(state);
  ++s->version;
}

// Runs `step` on the slice's executor thread: SYNC sums the gradients in rank
// order (deterministic) and divides by their number; then one optimizer
// step. A slice closed meanwhile applies nothing.
void RunStep(const Job& job, Slice* s, QueuedStep& step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->closed.ok()) {
    ApplyStep(s, step.grads);
    if (job.spec.mode() != SYNC) {
      int64_t& last = s->last_clock.try_emplace(step.worker, -1).first->second;
      last = std::max(last, step.clock);
    }
  }
  for (auto& buffer : step.grads) ReturnBuffer(s, std::move(buffer));
  ++s->steps_done;
  s->changed.SignalAll();
}

// Queues `step`; the steps of one slice run in the order queued. With
// steps held by a committer (see DeferredStep), it goes behind them. Else,
// with nothing queued: a committer that `may_hold` a step takes it (true:
// the caller must hand the slice to its DeferredStep), unless the slice is
// large; a small slice runs it at once, as its arithmetic costs less than
// waking a thread. Else it goes to the slice's executor thread.
bool QueueStep(const std::shared_ptr<Job>& job, Slice* s, QueuedStep step, bool may_hold)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  ++s->steps_queued;
  const bool idle = s->steps_done + 1 == s->steps_queued;
  if (!s->held_steps.empty() || (may_hold && idle && s->range.size() <= kHeldStepElements)) {
    s->held_steps.push_back(std::move(step));
    return s->held_steps.size() == 1;
  }
  if (idle && s->range.size() <= kInlineStepElements) {
    RunStep(*job, s, step);
    return false;
  }
  job->executor->Submit(s->apply_key, [job, s, step = std::move(step)]() mutable {
    absl::MutexLock lock(&s->mu);
    RunStep(*job, s, step);
  });
  return false;
}

// Waits until the steps queued on `s` before now have run (a bounded wait:
// the executor never waits for anything but slice locks).
void AwaitQueuedSteps(Slice* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  const int64_t target = s->steps_queued;
  while (s->steps_done < target) s->changed.Wait(&s->mu);
}

// SYNC: once every live worker has pushed the open clock, queues its step and
// opens the next clock. Returns QueueStep's answer (false if nothing queued).
bool MaybeAggregate(const std::shared_ptr<Job>& job, Slice* s, bool may_hold)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
  if (s->live.empty() || s->pending.empty()) return false;
  for (int w : s->live) {
    if (s->pending.count(w) == 0) return false;
  }
  QueuedStep step;
  for (auto& [rank, buffer] : s->pending) step.grads.push_back(std::move(buffer));
  s->pending.clear();
  ++s->open_clock;
  return QueueStep(job, s, std::move(step), may_hold);
}

// The clock through which every live worker's pushes are in `s`'s weights
// (see PulledSlice::view_clock).
int64_t ViewClock(const Job& job, const Slice* s) ABSL_SHARED_LOCKS_REQUIRED(s->mu) {
  if (job.spec.mode() == SYNC) return s->version - 1;
  int64_t view = std::numeric_limits<int64_t>::max();
  for (int w : s->live) {
    auto it = s->last_clock.find(w);
    view = std::min(view, it == s->last_clock.end() ? int64_t{-1} : it->second);
  }
  // No live worker: nothing can be missing; report what the slice has seen.
  if (s->live.empty()) return s->version - 1;
  return view;
}

// Whether a pull at `clock` may read `s` now, per the job's mode.
bool PullReady(const Job& job, const Slice* s, int64_t clock)
    ABSL_SHARED_LOCKS_REQUIRED(s->mu) {
  switch (job.spec.mode()) {
    case SYNC:
      return s->version >= clock;
    case SSP: {
      const int64_t need = clock - job.spec.staleness() - 1;
      for (int w : s->live) {
        auto it = s->last_clock.find(w);
        const int64_t have = it == s->last_clock.end() ? -1 : it->second;
        if (have < need) return false;
      }
      return true;
    }
    default:
      return true;
  }
}

std::string PullTimeoutMessage(const Job& job, const Slice* s, int64_t clock)
    ABSL_SHARED_LOCKS_REQUIRED(s->mu) {
  std::string head = absl::StrCat("job '", job.id, "': pull of ", s->Name(), " at clock ",
                                  clock, " timed out; the slice is at version ", s->version);
  if (s->live.empty()) return absl::StrCat(head, " and the job has no live workers");
  if (job.spec.mode() == SSP) {
    const int64_t need = clock - job.spec.staleness() - 1;
    std::vector<std::string> behind;
    for (int w : s->live) {
      auto it = s->last_clock.find(w);
      const int64_t have = it == s->last_clock.end() ? -1 : it->second;
      if (have < need) behind.push_back(absl::StrCat(w, " (at clock ", have, ")"));
    }
    return absl::StrCat(head, "; staleness ", job.spec.staleness(),
                        " needs every live worker to have pushed clock ", need,
                        "; behind: ", absl::StrJoin(behind, ", "));
  }
  std::vector<int> missing;
  for (int w : s->live) {
    if (s->pending.count(w) == 0) missing.push_back(w);
  }
  return absl::StrCat(head, "; live workers that have not pushed clock ", s->open_clock, ": ",
                      RankList(missing));
}

absl::StatusOr<std::vector<int>> NormalizeRanks(const std::vector<int>& ranks) {
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  if (!sorted.empty() && sorted.front() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("live worker ranks must be >= 0, got ", sorted.front()));
  }
  return sorted;
}

void CloseJob(Job* job, const absl::Status& why) {
  for (auto& s : job->slices) {
    absl::MutexLock lock(&s->mu);
    if (!s->closed.ok()) continue;
    s->closed = why;
    for (auto& [rank, buffer] : s->pending) ReturnBuffer(s.get(), std::move(buffer));
    s->pending.clear();
    s->changed.SignalAll();
  }
}

// Whether an existing job was created from the same request.
absl::Status SameJob(const Job& job, const JobSpec& spec,
                     const std::map<std::string, TensorSpec, std::less<>>& tensors,
                     const std::vector<std::pair<std::string, Range>>& slices) {
  if (job.spec.SerializeAsString() != spec.SerializeAsString()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "job '", job.id, "' already exists on this server with a different spec"));
  }
  bool same_tensors = job.tensors.size() == tensors.size();
  for (auto a = job.tensors.begin(), b = tensors.begin(); same_tensors && a != job.tensors.end();
       ++a, ++b) {
    same_tensors = a->second.SerializeAsString() == b->second.SerializeAsString();
  }
  if (!same_tensors) {
    return absl::AlreadyExistsError(absl::StrCat(
        "job '", job.id, "' already exists on this server with different tensors"));
  }
  std::vector<std::string> have, want;
  for (const auto& s : job.slices) have.push_back(s->Name());
  for (const auto& [t, r] : slices) {
    want.push_back(absl::StrCat("'", t, "' [", r.begin, ",", r.end, ")"));
  }
  if (have != want) {
    return absl::AlreadyExistsError(absl::StrCat(
        "job '", job.id, "' already exists on this server with slices ",
        absl::StrJoin(have, ", "), "; asked for ", absl::StrJoin(want, ", ")));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- PushSession

PushSession::PushSession(std::shared_ptr<internal::Job> job, int worker, int64_t clock,
                         int parts, uint64_t push_id)
    : job_(std::move(job)), worker_(worker), clock_(clock), parts_(parts), push_id_(push_id) {}

PushSession::~PushSession() {
  absl::MutexLock lock(&mu_);
  ReleaseBuffers();
}

uint64_t PushSession::elements() const {
  absl::MutexLock lock(&mu_);
  return elements_;
}

void PushSession::ReleaseBuffers() {
  for (auto& [index, buffer] : staged_) {
    if (buffer == nullptr) continue;
    Slice* s = job_->slices[index].get();
    absl::MutexLock lock(&s->mu);
    ReturnBuffer(s, std::move(buffer));
  }
  staged_.clear();
}

void PushSession::Fail(const absl::Status& why) {
  if (finished_) return;
  if (error_.ok()) error_ = why;
  ReleaseBuffers();
}

absl::Status PushSession::AddChunk(absl::string_view tensor, uint64_t offset,
                                   const char* bytes, size_t nbytes) {
  return AddChunkWith(tensor, offset, nbytes, [&](char* dst) {
    std::memcpy(dst, bytes, nbytes);
    return absl::OkStatus();
  });
}

absl::Status PushSession::AddChunkWith(absl::string_view tensor, uint64_t offset, size_t nbytes,
                                       absl::FunctionRef<absl::Status(char* dst)> fill) {
  return AddChunkImpl(tensor, offset, nbytes, [&](StagingBuffer* b, uint64_t first) {
    return fill(reinterpret_cast<char*>(b->values() + first));
  });
}

absl::Status PushSession::AddChunkHeld(absl::string_view tensor, uint64_t offset,
                                       std::shared_ptr<const HeldBytes> bytes) {
  return AddChunkImpl(tensor, offset, bytes->size(), [&](StagingBuffer* b, uint64_t first) {
    const uint64_t n = bytes->size() / sizeof(float);
    b->held.emplace(first, StagingBuffer::HeldRun{n, std::move(bytes)});
    return absl::OkStatus();
  });
}

absl::Status PushSession::AddChunkImpl(
    absl::string_view tensor, uint64_t offset, size_t nbytes,
    absl::FunctionRef<absl::Status(StagingBuffer*, uint64_t)> place) {
  absl::MutexLock lock(&mu_);
  if (finished_) return absl::FailedPreconditionError("push session already committed");
  if (!error_.ok()) return error_;
  absl::Status status = StageChunk(tensor, offset, nbytes, place);
  if (!status.ok()) Fail(status);
  return status;
}

absl::Status PushSession::StageChunk(
    absl::string_view tensor, uint64_t offset, size_t nbytes,
    absl::FunctionRef<absl::Status(StagingBuffer*, uint64_t)> place) {
  if (nbytes % sizeof(float) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "push to '", tensor, "' at offset ", offset, ": ", nbytes,
        " bytes is not a whole number of float32 values"));
  }
  const uint64_t n = nbytes / sizeof(float);
  if (n == 0) return absl::OkStatus();
  if (offset > std::numeric_limits<uint64_t>::max() - n) {
    return absl::InvalidArgumentError(
        absl::StrCat("push to '", tensor, "': offset ", offset, " overflows"));
  }
  const Range r{offset, offset + n};
  TESSERA_ASSIGN_OR_RETURN(Slice * s, job_->FindSlice(tensor, r, "push"));

  auto it = staged_.find(s->index);
  if (it == staged_.end()) {
    absl::MutexLock lock(&s->mu);
    TESSERA_RETURN_IF_ERROR(CheckPushable(*job_, s, worker_, clock_));
    it = staged_.emplace(s->index, TakeBuffer(s)).first;
  }
  StagingBuffer* b = it->second.get();
  const uint64_t lb = r.begin - s->range.begin;
  const uint64_t le = r.end - s->range.begin;
  // Overlap with the interval starting after lb, or with the one before it.
  auto next = b->covered.upper_bound(lb);
  const bool overlaps_next = next != b->covered.end() && next->first < le;
  const bool overlaps_prev = next != b->covered.begin() && std::prev(next)->second > lb;
  if (overlaps_next || overlaps_prev) {
    return absl::InvalidArgumentError(
        absl::StrCat("push to '", tensor, "': elements [", r.begin, ",", r.end,
                     ") overlap elements already pushed in this stream"));
  }
  TESSERA_RETURN_IF_ERROR(place(b, lb));
  // Insert [lb, le), merged with touching neighbours so in-order chunks keep
  // the map at one entry.
  uint64_t begin = lb, end = le;
  if (next != b->covered.begin() && std::prev(next)->second == lb) {
    auto prev = std::prev(next);
    begin = prev->first;
    b->covered.erase(prev);
  }
  if (next != b->covered.end() && next->first == le) {
    end = next->second;
    b->covered.erase(next);
  }
  b->covered.emplace(begin, end);
  b->covered_count += n;
  elements_ += n;
  return absl::OkStatus();
}

absl::Status PushSession::Commit(DeferredStep* deferred) { return EndPart(deferred); }

absl::Status PushSession::EndPart(DeferredStep* deferred) {
  absl::Status status;
  bool last;
  {
    absl::MutexLock lock(&mu_);
    if (ended_ >= parts_) {
      return absl::FailedPreconditionError(finished_ ? "push session already committed"
                                                     : "push session already ended");
    }
    last = ++ended_ == parts_;
    if (!error_.ok()) {
      status = error_;
    } else if (last) {
      finished_ = true;
      status = CommitImpl(deferred);
      ReleaseBuffers();  // whatever was not handed to the slices
    }
  }
  if (last) PartEnded();
  return status;
}

void PushSession::FailPart(const absl::Status& why) {
  bool last;
  {
    absl::MutexLock lock(&mu_);
    if (ended_ >= parts_) return;
    Fail(why);
    last = ++ended_ == parts_;
  }
  if (last) PartEnded();
}

void PushSession::Abandon(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  Fail(why);
}

void PushSession::PartEnded() {
  if (parts_ == 1) return;  // never registered
  absl::MutexLock lock(&job_->pushes_mu);
  auto it = job_->open_pushes.find({worker_, push_id_});
  // `this` outlives the erase: the caller holds a reference.
  if (it != job_->open_pushes.end() && it->second.session.get() == this) {
    job_->open_pushes.erase(it);
  }
}

// The analysis cannot follow a variable number of locks taken in a loop; the
// slices' fields are touched only between the Lock and Unlock loops.
absl::Status PushSession::CommitImpl(DeferredStep* deferred) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (staged_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("push of worker ", worker_, " clock ", clock_,
                                                   " to job '", job_->id,
                                                   "' carried no values"));
  }
  for (const auto& [index, buffer] : staged_) {
    const Slice* s = job_->slices[index].get();
    if (buffer->covered_count != s->range.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "push to '", s->tensor, "' covered ", buffer->covered_count, " of ", s->range.size(),
          " elements of slice [", s->range.begin, ",", s->range.end, ")"));
    }
  }
  // Backpressure: wait while a slice has many steps queued. One slice at a
  // time, before the locks below: its executor thread may need a lock held
  // there to drain another slice's queue.
  for (const auto& entry : staged_) {
    Slice* s = job_->slices[entry.first].get();
    absl::MutexLock lock(&s->mu);
    while (s->closed.ok() && s->steps_queued - s->steps_done >= kMaxQueuedSteps) {
      s->changed.Wait(&s->mu);
    }
  }
  // Lock every touched slice in index order, check them all, then queue all:
  // either the whole push lands or none of it.
  std::vector<Slice*> locked;
  locked.reserve(staged_.size());
  for (const auto& entry : staged_) {
    Slice* s = job_->slices[entry.first].get();
    s->mu.Lock();
    locked.push_back(s);
  }
  absl::Status status;
  for (Slice* s : locked) {
    status = CheckPushable(*job_, s, worker_, clock_);
    if (!status.ok()) break;
  }
  if (status.ok()) {
    const bool sync = job_->spec.mode() == SYNC;
    for (Slice* s : locked) {
      std::unique_ptr<StagingBuffer>& buffer = staged_[s->index];
      // The committer runs steps of up to kHeldStepElements in all itself,
      // once it has answered: the first slice's, and those of others not
      // too small to run right here; the executor threads take the others
      // meanwhile (or the commit runs them, QueueStep).
      const bool may_hold =
          deferred != nullptr && deferred->elements() + s->range.size() <= kHeldStepElements &&
          (deferred->empty() || s->range.size() >= kMinHeldStepElements);
      bool held;
      if (sync) {
        s->pending[worker_] = std::move(buffer);
        held = MaybeAggregate(job_, s, may_hold);
      } else {
        QueuedStep step;
        step.worker = worker_;
        step.clock = clock_;
        step.grads.push_back(std::move(buffer));
        held = QueueStep(job_, s, std::move(step), may_hold);
      }
      if (held) deferred->Hold(job_, s);
    }
    job_->pushes.fetch_add(1, std::memory_order_relaxed);
    job_->push_bytes.fetch_add(elements_ * sizeof(float), std::memory_order_relaxed);
  }
  for (auto it = locked.rbegin(); it != locked.rend(); ++it) (*it)->mu.Unlock();
  return status;
}

// ----------------------------------------------------------------- ShardStore

ShardStore::ShardStore(Options options)
    : options_(options),
      executor_(std::make_unique<KeyedExecutor>(
          options.apply_threads > 0 ? options.apply_threads : KeyedExecutor::DefaultThreads())) {}

ShardStore::~ShardStore() {
  Shutdown();
  executor_.reset();  // runs what is queued (closed slices apply nothing), then joins
}

absl::StatusOr<std::shared_ptr<Job>> ShardStore::FindJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return absl::CancelledError("parameter server is shutting down");
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job '", job_id, "' on this server"));
  }
  return it->second;
}

absl::Status ShardStore::CreateJob(const std::string& job_id, const JobSpec& spec_in,
                                   const std::vector<TensorSpec>& tensors,
                                   const std::vector<TensorSlice>& slices,
                                   const std::vector<int>& live_workers) {
  if (job_id.empty()) return absl::InvalidArgumentError("create job: job_id is empty");
  const std::string what = absl::StrCat("create job '", job_id, "'");
  JobSpec spec = spec_in;
  ApplyJobDefaults(&spec);
  if (spec.mode() != SYNC && spec.mode() != ASYNC && spec.mode() != SSP) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown consistency mode ", static_cast<int>(spec.mode())));
  }
  if (spec.staleness() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": staleness must be >= 0, got ", spec.staleness()));
  }
  auto optimizer = Optimizer::Create(spec.optimizer());
  if (!optimizer.ok()) return Annotate(optimizer.status(), what);
  TESSERA_RETURN_IF_ERROR_CTX(CheckPreconditioning(spec.compression(), spec.optimizer()), what);
  std::unique_ptr<Optimizer> preconditioned;
  if (spec.compression().precondition_on_worker()) {
    OptimizerSpec step;  // plain SGD at the job's rate: w -= lr * g
    step.set_kind(OptimizerSpec::SGD);
    step.set_learning_rate(spec.optimizer().learning_rate());
    auto created = Optimizer::Create(step);
    if (!created.ok()) return Annotate(created.status(), what);
    preconditioned = *std::move(created);
  }
  TESSERA_ASSIGN_OR_RETURN(std::vector<int> live, NormalizeRanks(live_workers));

  std::map<std::string, TensorSpec, std::less<>> tensor_map;
  for (const TensorSpec& t : tensors) {
    if (t.name().empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": a tensor has no name"));
    if (t.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": tensor '", t.name(), "' has size 0"));
    }
    if (!tensor_map.emplace(t.name(), t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": tensor '", t.name(), "' is declared twice"));
    }
  }
  std::vector<std::pair<std::string, Range>> wanted;
  uint64_t total = 0;
  for (const TensorSlice& ts : slices) {
    auto t = tensor_map.find(ts.tensor());
    if (t == tensor_map.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": slice of unknown tensor '", ts.tensor(), "'"));
    }
    if (ts.begin() >= ts.end() || ts.end() > t->second.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": slice [", ts.begin(), ",", ts.end(), ") of tensor '",
                       ts.tensor(), "' (size ", t->second.size(), ") is empty or out of range"));
    }
    total += ts.end() - ts.begin();
    if (total > options_.max_elements_per_job) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, ": slices hold more than ", options_.max_elements_per_job,
                       " elements, the limit per job on this server"));
    }
    wanted.emplace_back(ts.tensor(), Range{ts.begin(), ts.end()});
  }
  std::sort(wanted.begin(), wanted.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.begin < b.second.begin;
  });
  for (size_t i = 1; i < wanted.size(); ++i) {
    if (wanted[i].first == wanted[i - 1].first &&
        wanted[i].second.begin < wanted[i - 1].second.end) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": slices [", wanted[i - 1].second.begin, ",", wanted[i - 1].second.end,
          ") and [", wanted[i].second.begin, ",", wanted[i].second.end, ") of tensor '",
          wanted[i].first, "' overlap"));
    }
  }

  // Same request again: adopt the live set and succeed.
  auto existing = [&]() -> std::shared_ptr<Job> {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    return it == jobs_.end() ? nullptr : it->second;
  }();
  if (existing != nullptr) {
    TESSERA_RETURN_IF_ERROR(SameJob(*existing, spec, tensor_map, wanted));
    return SetLiveWorkers(job_id, live);
  }

  // Build (and initialize, which may take a while) outside the map lock.
  auto job = std::make_shared<Job>();
  job->id = job_id;
  job->spec = spec;
  job->optimizer = *std::move(optimizer);
  job->executor = executor_.get();
  job->preconditioned = std::move(preconditioned);
  job->tensors = std::move(tensor_map);
  {
    absl::MutexLock lock(&job->mu);
    job->live = live;
  }
  for (const auto& [tensor, range] : wanted) {
    const TensorSpec& tspec = job->tensors.at(tensor);
    const Optimizer* opt = PreconditionedOnWorker(spec.compression(), tspec)
                               ? job->preconditioned.get()
                               : job->optimizer.get();
    auto s = std::make_unique<Slice>(tensor, range, job->slices.size(),
                                     next_apply_key_.fetch_add(1, std::memory_order_relaxed), opt);
    {
      absl::MutexLock lock(&s->mu);
      s->weights.resize(range.size());
      InitializeSlice(tspec, spec.seed(), range, absl::MakeSpan(s->weights));
      s->opt_state = opt->NewState(range.size());
      s->live = live;
    }
    job->by_tensor[tensor].push_back(s.get());
    job->slices.push_back(std::move(s));
  }

  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::CancelledError("parameter server is shutting down");
    auto [it, inserted] = jobs_.emplace(job_id, job);
    if (inserted) return absl::OkStatus();
    existing = it->second;  // lost a race with an identical (or not) CreateJob
  }
  TESSERA_RETURN_IF_ERROR(SameJob(*existing, spec, job->tensors, wanted));
  return SetLiveWorkers(job_id, live);
}

absl::Status ShardStore::DropJob(const std::string& job_id) {
  std::shared_ptr<Job> job;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::CancelledError("parameter server is shutting down");
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("no job '", job_id, "' on this server"));
    }
    job = std::move(it->second);
    jobs_.erase(it);
  }
  const absl::Status why = absl::AbortedError(absl::StrCat("job '", job_id, "' was dropped"));
  CloseJob(job.get(), why);
  DropOpenPushes(job.get(), [](int) { return true; }, why);
  return absl::OkStatus();
}

absl::Status ShardStore::SetLiveWorkers(const std::string& job_id,
                                        const std::vector<int>& ranks) {
  TESSERA_ASSIGN_OR_RETURN(std::vector<int> live, NormalizeRanks(ranks));
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  DropOpenPushes(
      job.get(), [&](int worker) { return !IsLive(live, worker); },
      absl::FailedPreconditionError("the worker left the live set; nothing applied"));
  absl::MutexLock job_lock(&job->mu);
  job->live = live;
  for (auto& slice : job->slices) {
    Slice* s = slice.get();
    absl::MutexLock lock(&s->mu);
    s->live = live;
    for (auto it = s->pending.begin(); it != s->pending.end();) {
      if (IsLive(live, it->first)) {
        ++it;
      } else {
        ReturnBuffer(s, std::move(it->second));
        it = s->pending.erase(it);
      }
    }
    if (job->spec.mode() == SYNC) MaybeAggregate(job, s, /*may_hold=*/false);
    s->changed.SignalAll();
  }
  return absl::OkStatus();
}

namespace {

// The checks of a push's start (ShardStore::BeginPush).
absl::Status CheckPushStart(Job& job, int worker, int64_t clock) {
  if (worker < 0 || clock < 0) {
    return absl::InvalidArgumentError(absl::StrCat("push to job '", job.id, "': worker ", worker,
                                                   " and clock ", clock, " must be >= 0"));
  }
  absl::ReaderMutexLock lock(&job.mu);
  if (!IsLive(job.live, worker)) {
    return absl::FailedPreconditionError(
        absl::StrCat("push to job '", job.id, "': worker ", worker,
                     " is not live (live workers: ", RankList(job.live), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PushSession>> ShardStore::BeginPush(const std::string& job_id,
                                                                   int worker, int64_t clock) {
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  TESSERA_RETURN_IF_ERROR(CheckPushStart(*job, worker, clock));
  return std::unique_ptr<PushSession>(
      new PushSession(std::move(job), worker, clock, /*parts=*/1, /*push_id=*/0));
}

absl::StatusOr<std::shared_ptr<PushSession>> ShardStore::JoinPush(const std::string& job_id,
                                                                  int worker, int64_t clock,
                                                                  uint64_t push_id, int parts,
                                                                  uint64_t prior_push_id) {
  if (parts < 1 || parts > kMaxPushParts) {
    return absl::InvalidArgumentError(absl::StrCat("push to job '", job_id, "' in ", parts,
                                                   " parts; want 1..", kMaxPushParts));
  }
  if (parts == 1) {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<PushSession> session,
                             BeginPush(job_id, worker, clock));
    return std::shared_ptr<PushSession>(std::move(session));
  }
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  TESSERA_RETURN_IF_ERROR(CheckPushStart(*job, worker, clock));
  std::shared_ptr<PushSession> session;
  absl::Status status;
  std::vector<std::shared_ptr<PushSession>> abandoned;
  {
    absl::MutexLock lock(&job->pushes_mu);
    auto& open = job->open_pushes;
    // The stream that opens a push abandons the worker's other open pushes
    // but its prior. One that joins abandons nothing: with two pushes in
    // flight, the older one's last parts arrive after the newer one opened.
    if (open.find({worker, push_id}) == open.end()) {
      for (auto it = open.lower_bound({worker, 0}); it != open.end() && it->first.first == worker;) {
        if (prior_push_id != 0 && it->first.second == prior_push_id) {
          ++it;
          continue;
        }
        abandoned.push_back(std::move(it->second.session));
        it = open.erase(it);
      }
    }
    auto [it, opened] = open.try_emplace({worker, push_id});
    Job::OpenPush& push = it->second;
    if (opened) {
      push.session.reset(new PushSession(job, worker, clock, parts, push_id));
    }
    const std::string what = absl::StrCat("push ", push_id, " of worker ", worker, " to job '",
                                          job_id, "'");
    if (push.session->clock_ != clock || push.session->parts_ != parts) {
      status = absl::InvalidArgumentError(absl::StrCat(
          what, ": a stream for clock ", clock, " in ", parts, " parts joins one for clock ",
          push.session->clock_, " in ", push.session->parts_));
    } else if (push.joined == parts) {
      status = absl::InvalidArgumentError(
          absl::StrCat(what, ": more than the ", parts, " streams it was split over"));
    } else {
      ++push.joined;
      session = push.session;
    }
  }
  for (auto& old : abandoned) {
    old->Abandon(absl::AbortedError(absl::StrCat(
        "worker ", worker, " started another push (clock ", clock, ") before this one's ",
        "streams all arrived; nothing applied")));
  }
  if (!status.ok()) return status;
  return session;
}

void ShardStore::DropOpenPushes(Job* job, absl::FunctionRef<bool(int worker)> drop,
                                const absl::Status& why) {
  std::vector<std::shared_ptr<PushSession>> dropped;
  {
    absl::MutexLock lock(&job->pushes_mu);
    for (auto it = job->open_pushes.begin(); it != job->open_pushes.end();) {
      if (!drop(it->first.first)) {
        ++it;
        continue;
      }
      dropped.push_back(std::move(it->second.session));
      it = job->open_pushes.erase(it);
    }
  }
  for (auto& session : dropped) session->Abandon(why);
}

absl::StatusOr<std::unique_ptr<PullCursor>> ShardStore::OpenPull(
    const std::string& job_id, int worker, int64_t clock, absl::Span<const TensorSlice> slices,
    absl::Time deadline) {
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  const std::string what = absl::StrCat("pull from job '", job_id, "'");
  if (worker < 0 || clock < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": worker ", worker, " and clock ", clock, " must be >= 0"));
  }
  if (slices.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no slices asked for"));
  std::vector<PullCursor::Source> sources;
  sources.reserve(slices.size());
  for (const TensorSlice& ts : slices) {
    if (ts.begin() >= ts.end()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": empty range [", ts.begin(), ",",
                                                     ts.end(), ") of '", ts.tensor(), "'"));
    }
    TESSERA_ASSIGN_OR_RETURN(Slice * s,
                             job->FindSlice(ts.tensor(), Range{ts.begin(), ts.end()}, what));
    sources.push_back(PullCursor::Source{s, ts.tensor(), Range{ts.begin(), ts.end()}, -1});
  }
  uint64_t elements = 0;
  for (PullCursor::Source& src : sources) {
    Slice* s = src.slice;
    absl::MutexLock lock(&s->mu);
    AwaitQueuedSteps(s);  // the caller's own committed pushes, at least
    if (s->closed.ok() && !PullReady(*job, s, clock)) {
      // A deadline already past is a caller asking "ready now?": not a wait.
      if (deadline <= absl::Now()) {
        return absl::DeadlineExceededError(PullTimeoutMessage(*job, s, clock));
      }
      job->waiting_pulls.fetch_add(1, std::memory_order_relaxed);
      bool timed_out = false;
      while (s->closed.ok() && !PullReady(*job, s, clock) && !timed_out) {
        timed_out = s->changed.WaitWithDeadline(&s->mu, deadline);
      }
      job->waiting_pulls.fetch_sub(1, std::memory_order_relaxed);
      if (s->closed.ok() && !PullReady(*job, s, clock)) {
        return absl::DeadlineExceededError(PullTimeoutMessage(*job, s, clock));
      }
    }
    if (!s->closed.ok()) return s->closed;
    src.view_clock = ViewClock(*job, s);
    elements += src.range.size();
  }
  auto cursor = std::unique_ptr<PullCursor>(new PullCursor(job, std::move(sources)));
  job->pulls.fetch_add(1, std::memory_order_relaxed);
  job->pull_bytes.fetch_add(elements * sizeof(float), std::memory_order_relaxed);
  const int64_t staleness =
      std::min<int64_t>(ObservedStaleness(clock, cursor->view_clock()), kStalenessBuckets - 1);
  job->staleness[staleness].fetch_add(1, std::memory_order_relaxed);
  return cursor;
}

absl::Status ShardStore::Pull(const std::string& job_id, int worker, int64_t clock,
                              absl::Span<const TensorSlice> slices, absl::Time deadline,
                              std::vector<PulledSlice>* out) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<PullCursor> cursor,
                           OpenPull(job_id, worker, clock, slices, deadline));
  out->resize(slices.size());
  for (size_t i = 0; i < slices.size(); ++i) {
    PulledSlice& dst = (*out)[i];
    dst.tensor = slices[i].tensor();
    dst.range = Range{slices[i].begin(), slices[i].end()};
    PullCursor::Piece piece;
    // One piece per range: the whole range is copied under one lock hold.
    TESSERA_ASSIGN_OR_RETURN(bool more, cursor->Next(
                                            dst.range.size(),
                                            [&](size_t n) {
                                              dst.values.resize(n);
                                              return dst.values.data();
                                            },
                                            &piece));
    if (!more) return absl::InternalError("pull cursor ended early");
    dst.version = piece.version;
    dst.view_clock = cursor->sources_[i].view_clock;
  }
  return absl::OkStatus();
}

// --------------------------------------------------------------- DeferredStep

void DeferredStep::Hold(std::shared_ptr<internal::Job> job, internal::Slice* s) {
  job_ = std::move(job);  // one push: the same job every time
  slices_.push_back(s);
  elements_ += s->range.size();
}

void DeferredStep::Run() {
  if (slices_.empty()) return;
  const std::vector<Slice*> slices = std::exchange(slices_, {});
  elements_ = 0;
  const std::shared_ptr<Job> job = std::move(job_);
  for (Slice* s : slices) {
    absl::MutexLock lock(&s->mu);
    // The steps queued behind ours meanwhile, too (few: see kMaxQueuedSteps).
    while (!s->held_steps.empty()) {
      QueuedStep step = std::move(s->held_steps.front());
      s->held_steps.pop_front();
      RunStep(*job, s, step);
    }
  }
}

// ----------------------------------------------------------------- PullCursor

PullCursor::PullCursor(std::shared_ptr<internal::Job> job, std::vector<Source> sources)
    : job_(std::move(job)), sources_(std::move(sources)) {
  view_clock_ = std::numeric_limits<int64_t>::max();
  for (const Source& src : sources_) {
    view_clock_ = std::min(view_clock_, src.view_clock);
    total_ += src.range.size();
  }
}

PullCursor::~PullCursor() = default;

namespace {
// The piece Next(max_elements) reads from a range with `left` elements to go.
size_t PieceSize(size_t max_elements, uint64_t left) {
  return std::min<uint64_t>(std::max<size_t>(max_elements, 1), left);
}
}  // namespace

size_t PullCursor::NextSize(size_t max_elements) const {
  if (next_source_ == sources_.size()) return 0;
  return PieceSize(max_elements, sources_[next_source_].range.size() - next_offset_);
}

size_t PullCursor::SizeAfterNext(size_t max_elements) const {
  const size_t n = NextSize(max_elements);
  if (n == 0) return 0;
  const uint64_t left = sources_[next_source_].range.size() - next_offset_ - n;
  if (left > 0) return PieceSize(max_elements, left);
  if (next_source_ + 1 == sources_.size()) return 0;
  return PieceSize(max_elements, sources_[next_source_ + 1].range.size());
}

absl::StatusOr<bool> PullCursor::Next(size_t max_elements,
                                      absl::FunctionRef<float*(size_t n)> alloc, Piece* piece) {
  if (next_source_ == sources_.size()) return false;
  const Source& src = sources_[next_source_];
  const size_t n = NextSize(max_elements);
  float* dst = alloc(n);
  Slice* s = src.slice;
  {
    absl::MutexLock lock(&s->mu);
    if (!s->closed.ok()) return s->closed;
    std::memcpy(dst, s->weights.data() + (src.range.begin - s->range.begin) + next_offset_,
                n * sizeof(float));
    piece->version = s->version;
  }
  piece->tensor = &src.tensor;
  piece->range = next_source_;
  piece->offset = src.range.begin + next_offset_;
  piece->size = n;
  next_offset_ += n;
  if (next_offset_ == src.range.size()) {
    ++next_source_;
    next_offset_ = 0;
  }
  return true;
}

absl::StatusOr<JobStats> ShardStore::Stats(const std::string& job_id) const {
  TESSERA_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  JobStats stats;
  stats.pushes = job->pushes.load(std::memory_order_relaxed);
  stats.pulls = job->pulls.load(std::memory_order_relaxed);
  stats.push_bytes = job->push_bytes.load(std::memory_order_relaxed);
  stats.pull_bytes = job->pull_bytes.load(std::memory_order_relaxed);
  stats.waiting_pulls = job->waiting_pulls.load(std::memory_order_relaxed);
  for (const auto& bucket : job->staleness) {
    stats.staleness_histogram.push_back(bucket.load(std::memory_order_relaxed));
  }
  bool first = true;
  for (const auto& s : job->slices) {
    absl::MutexLock lock(&s->mu);
    AwaitQueuedSteps(s.get());
    stats.min_version = first ? s->version : std::min(stats.min_version, s->version);
    first = false;
  }
  return stats;
}

std::vector<std::string> ShardStore::JobIds() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, job] : jobs_) ids.push_back(id);
  return ids;
}

void ShardStore::Shutdown() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  const absl::Status why = absl::CancelledError("parameter server is shutting down");
  for (auto& job : jobs) {
    CloseJob(job.get(), why);
    DropOpenPushes(job.get(), [](int) { return true; }, why);
  }
}

}  // namespace tessera::server
