#ifndef TESSERA_SERVER_SHARD_STORE_H_
#define TESSERA_SERVER_SHARD_STORE_H_

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/held_bytes.h"
#include "common/range.h"
#include "common/staleness.h"
#include "proto/job.pb.h"

namespace tessera {
class KeyedExecutor;
}  // namespace tessera

namespace tessera::server {

namespace internal {
struct Job;
struct Slice;
struct StagingBuffer;
}  // namespace internal

// Values read by ShardStore::Pull for one requested range.
struct PulledSlice {
  std::string tensor;
  Range range;          // elements [begin, end) of the whole tensor
  int64_t version = 0;  // optimizer steps applied to the slice they were read from
  // The slice's view clock when read: every live worker's pushes for clocks
  // <= view_clock are included in `values` (-1: some live worker has pushed
  // nothing). SYNC: version - 1. ASYNC/SSP: the minimum over live workers of
  // the latest clock each committed to the slice (workers push clocks in order).
  int64_t view_clock = -1;
  std::vector<float> values;
};

// A pull read out piece by piece (ShardStore::OpenPull): each Next() copies
// the next piece of the requested ranges under its slice's lock, so a pull
// holds no lock between pieces and needs no snapshot buffer of its own (a
// fresh multi-megabyte buffer per pull costs more in page faults than the
// copy itself). In ASYNC/SSP, pieces of one slice read by different Next()
// calls may straddle optimizer steps (each piece is consistent and carries
// its version; every piece includes at least what view_clock() promises).
// In SYNC a reader's slices cannot move while it reads: the next step needs
// the reader's own push. Keeps its job alive. Used by one thread.
class PullCursor {
 public:
  struct Piece {
    const std::string* tensor = nullptr;  // valid while the cursor lives
    uint64_t offset = 0;                  // element offset in the whole tensor
    size_t size = 0;                      // elements
    int64_t version = 0;                  // the slice's version when copied
    size_t range = 0;                     // index of the requested range it belongs to
  };
  ~PullCursor();
  PullCursor(const PullCursor&) = delete;
  PullCursor& operator=(const PullCursor&) = delete;

  // Copies up to `max_elements` (>= 1) values of the next piece into the
  // buffer `alloc(n)` returns for its n elements, and describes it in
  // *piece. Returns false when every range was read. ABORTED / CANCELLED if
  // the job was dropped / the store shut down meanwhile.
  absl::StatusOr<bool> Next(size_t max_elements, absl::FunctionRef<float*(size_t n)> alloc,
                            Piece* piece);

  // The pull's view clock: the minimum over its slices when opened (see
  // PulledSlice::view_clock).
  int64_t view_clock() const { return view_clock_; }
  // Elements the pull returns in all.
  uint64_t total_elements() const { return total_; }
  // Index of the requested range the next Next() reads from (== the number
  // of ranges when done).
  size_t next_range() const { return next_source_; }
  // Elements the next Next(max_elements) reads; 0 when done.
  size_t NextSize(size_t max_elements) const;
  // Elements the Next(max_elements) after that one reads; 0 if none.
  size_t SizeAfterNext(size_t max_elements) const;

 private:
  friend class ShardStore;
  struct Source {
    internal::Slice* slice;
    std::string tensor;
    Range range;
    int64_t view_clock;
  };
  PullCursor(std::shared_ptr<internal::Job> job, std::vector<Source> sources);

  const std::shared_ptr<internal::Job> job_;
  const std::vector<Source> sources_;
  int64_t view_clock_ = -1;
  uint64_t total_ = 0;
  size_t next_source_ = 0;
  uint64_t next_offset_ = 0;  // within sources_[next_source_].range
};

// Counters of one job on this server.
struct JobStats {
  uint64_t pushes = 0;      // committed pushes
  uint64_t pulls = 0;       // completed pulls
  uint64_t push_bytes = 0;  // gradient bytes committed
  uint64_t pull_bytes = 0;  // value bytes returned
  int64_t min_version = 0;  // smallest version among the slices held here
  int64_t waiting_pulls = 0;  // pulls blocked right now, waiting for fresh data
  // Pulls served by observed staleness (ObservedStaleness of the pull's clock
  // and the minimum view clock over the slices it read); kStalenessBuckets entries.
  std::vector<uint64_t> staleness_histogram;
};

// An optimizer step that the thread committing a push runs itself once it
// has answered the push (PushSession::EndPart), instead of handing it to the
// slice's executor thread: no thread is woken for it, and the worker's answer
// does not wait for the arithmetic. It runs at Run() or at destruction,
// whichever comes first, together with the slice's steps queued behind it
// meanwhile. Until then pulls and Stats wait for it as for any queued step:
// run it promptly, and wait for nothing while holding one. Not thread-safe.
class DeferredStep {
 public:
  DeferredStep() = default;
  ~DeferredStep() { Run(); }
  DeferredStep(const DeferredStep&) = delete;
  DeferredStep& operator=(const DeferredStep&) = delete;

  // Runs the held steps, if any (then empty() again).
  void Run();
  bool empty() const { return slices_.empty(); }
  // Elements of the slices whose steps it holds.
  size_t elements() const { return elements_; }

 private:
  friend class PushSession;
  void Hold(std::shared_ptr<internal::Job> job, internal::Slice* s);

  std::shared_ptr<internal::Job> job_;
  std::vector<internal::Slice*> slices_;
  size_t elements_ = 0;
};

// One worker's gradient push for one clock, staged and then applied as a whole.
// Chunks are copied into staging buffers that the slice reuses across pushes,
// or held where they arrived (AddChunkHeld);
// nothing reaches the weights before the push is committed, and the commit
// takes either every touched slice or none, so a broken stream never
// half-applies. Destroying a session that was not committed discards it.
// A push may arrive in several parts, one stream per channel
// (ShardStore::JoinPush): the streams add chunks to one session, each ends
// its part (EndPart or FailPart), and the end of the last part commits. A
// session from BeginPush has one part.
// Thread-safe: the streams of a push may add chunks at the same time. It
// keeps its job alive, so it may outlive ShardStore::DropJob (its commit
// then fails).
class PushSession {
 public:
  ~PushSession();
  PushSession(const PushSession&) = delete;
  PushSession& operator=(const PushSession&) = delete;

  // Stages `nbytes` bytes of little-endian float32 gradient for elements
  // [offset, offset + nbytes / 4) of `tensor`. Errors, after which the
  // session only returns that error:
  //   INVALID_ARGUMENT  nbytes % 4 != 0; the range is not inside one slice
  //                     held here; an element was already written in this push.
  //   NOT_FOUND         the job has no tensor of that name, or none held here.
  //   FAILED_PRECONDITION the worker is no longer live; SYNC: the slice's
  //                     version differs from the push clock.
  //   ALREADY_EXISTS    SYNC: this worker already pushed this clock to the slice.
  //   ABORTED / CANCELLED the job was dropped / the store shut down.
  // `bytes` need not be aligned.
  absl::Status AddChunk(absl::string_view tensor, uint64_t offset, const char* bytes,
                        size_t nbytes);

  // As AddChunk, but the bytes are written by `fill` straight into the
  // staging buffer (e.g. from a network buffer, without an intermediate
  // copy). `fill` gets a destination of `nbytes` bytes, called only after
  // every check passed; an error it returns fails the session.
  absl::Status AddChunkWith(absl::string_view tensor, uint64_t offset, size_t nbytes,
                            absl::FunctionRef<absl::Status(char* dst)> fill);

  // As AddChunk, but the bytes stay where they are, shared with `bytes`,
  // until the optimizer step reads them (no staging copy).
  absl::Status AddChunkHeld(absl::string_view tensor, uint64_t offset,
                            std::shared_ptr<const HeldBytes> bytes);

  // Commits a push of one part (the same as its EndPart). Every slice touched
  // must be fully covered, else
  // INVALID_ARGUMENT "push to 'dense0/w' covered 10 of 1000 elements of slice
  // [0,1000)"; a push that touched nothing is INVALID_ARGUMENT. The checks of
  // AddChunk are repeated under the slice locks. SYNC: the gradient waits
  // until every live worker pushed the clock, then they are averaged into one
  // optimizer step. ASYNC/SSP: one optimizer step. Steps run on the store's
  // executor thread for the slice, in commit order, so Commit returns without
  // waiting for the arithmetic; every pull (and Stats) that starts after it
  // returns sees the step (see ShardStore). Waits first while a touched slice
  // has several steps queued (backpressure).
  // With `deferred`, the caller offers to run steps itself once it has
  // answered the push: slices of up to 1 Mi elements in all, each with no
  // step queued (past the first, none under 4 Ki elements), leave their
  // steps to `deferred` instead of an executor thread or the commit itself
  // (a push of many small tensors is answered before their arithmetic, as
  // one of a large tensor is).
  // Call at most once; later calls return FAILED_PRECONDITION.
  absl::Status Commit(DeferredStep* deferred = nullptr);

  // The stream of one part ended cleanly. The last part to end commits the
  // push (see Commit, and for `deferred`) and returns the commit's status; an
  // earlier one returns OK, or the error that already failed the push. Once
  // per part.
  absl::Status EndPart(DeferredStep* deferred = nullptr);
  // The stream of one part broke or was refused (`why`): the push is
  // discarded, nothing is applied, and later calls on the session return
  // `why`. Counts as that part's end.
  void FailPart(const absl::Status& why);

  // Gradient elements staged so far, by every part.
  uint64_t elements() const;

 private:
  friend class ShardStore;
  PushSession(std::shared_ptr<internal::Job> job, int worker, int64_t clock, int parts,
              uint64_t push_id);

  // StageChunk, after which an error fails the session for good.
  absl::Status AddChunkImpl(
      absl::string_view tensor, uint64_t offset, size_t nbytes,
      absl::FunctionRef<absl::Status(internal::StagingBuffer*, uint64_t)> place);
  // Checks a chunk of `nbytes` bytes (size, slice, liveness, overlap), then
  // `place`s it in the slice's staging buffer at its slice-local first element.
  absl::Status StageChunk(
      absl::string_view tensor, uint64_t offset, size_t nbytes,
      absl::FunctionRef<absl::Status(internal::StagingBuffer*, uint64_t)> place)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitImpl(DeferredStep* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails the push with `why` (unless it already failed or committed) and
  // gives its buffers back.
  void Fail(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fail, for a session the store drops before all its parts arrived.
  void Abandon(const absl::Status& why) ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseBuffers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After the last part ended: takes the session out of the job's open pushes.
  void PartEnded() ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<internal::Job> job_;
  const int worker_;
  const int64_t clock_;
  const int parts_;         // streams that carry the push
  const uint64_t push_id_;  // the client's id of the push; 0 for one part

  mutable absl::Mutex mu_;  // ordered before every Slice::mu
  // Slices touched, keyed by slice index (the lock order), with the staging
  // buffer taken from each slice's pool.
  std::map<size_t, std::unique_ptr<internal::StagingBuffer>> staged_ ABSL_GUARDED_BY(mu_);
  uint64_t elements_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int joined_ ABSL_GUARDED_BY(mu_) = 1;  // parts whose stream arrived
  int ended_ ABSL_GUARDED_BY(mu_) = 0;   // parts whose stream ended
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // committed (or tried to)
};

// The most streams one push may be split over (PushChunk.parts).
inline constexpr int kMaxPushParts = 16;

// The parameters of every job this server holds: dense slices of tensors,
// their optimizer state, versions and a clock table per slice per worker.
// Consistency follows the job spec's mode:
//   SYNC  a slice at version v accepts each live worker's push for clock v;
//         when every live worker pushed, their gradients are summed in rank
//         order, divided by their number, one optimizer step is applied and
//         the version becomes v + 1. A pull at clock c waits for version >= c.
//   ASYNC each push is one optimizer step; pulls wait for nothing but the
//         steps already queued (below).
//   SSP   pushes as ASYNC; a pull at clock c waits until every live worker's
//         latest push to the slice is for a clock >= c - staleness - 1, i.e.
//         every live worker has reached clock c - s (committed its pushes for
//         clocks < c - s). Staleness 0 is BSP timing: a pull at c sees every
//         push for clocks < c. Workers outside the live set never hold a pull.
// Optimizer steps run off the RPC threads, on a KeyedExecutor keyed by slice:
// each slice's steps run in commit order on one thread, different slices' in
// parallel. A push is acknowledged once staged and queued; a pull first waits
// for the steps queued on its slices before it started, so it sees every push
// committed before it (read-your-writes), and the mode's wait above is on
// applied steps.
// Thread-safe. No global lock on the data path: the job map is locked only to
// find a job; each slice has its own mutex, held while staging buffers move,
// while an optimizer step runs and while a pull copies values.
class ShardStore {
 public:
  struct Options {
    // Upper bound on the elements one job may place on this server (weights;
    // optimizer state comes on top). Protects the process from a garbage
    // CreateJob. Default 2^30 (4 GiB of float32).
    uint64_t max_elements_per_job = uint64_t{1} << 30;
    // Threads that run optimizer steps; 0: KeyedExecutor::DefaultThreads().
    int apply_threads = 0;
  };

  ShardStore() : ShardStore(Options()) {}
  explicit ShardStore(Options options);
  ~ShardStore();
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  // Creates job `job_id` holding `slices` of `tensors` (every tensor of the
  // job; slices name a subset), each initialized with InitializeSlice and the
  // spec's seed. Defaults are applied to `spec` (ApplyJobDefaults).
  // Idempotent: the same spec, tensors and slices again is OK and adopts
  // `live_workers`; anything different is ALREADY_EXISTS naming the
  // difference. INVALID_ARGUMENT for a bad spec, tensor, slice or rank;
  // RESOURCE_EXHAUSTED past Options::max_elements_per_job.
  absl::Status CreateJob(const std::string& job_id, const JobSpec& spec,
                         const std::vector<TensorSpec>& tensors,
                         const std::vector<TensorSlice>& slices,
                         const std::vector<int>& live_workers);

  // Removes a job. Waiting pulls and later commits of open sessions get
  // ABORTED. NOT_FOUND if there is no such job.
  absl::Status DropJob(const std::string& job_id);

  // Replaces the job's live worker ranks. Pushes from other ranks get
  // FAILED_PRECONDITION. In SYNC mode, gradients staged by ranks that left are
  // dropped and a step whose remaining live workers have all pushed is applied
  // at once, so a dead worker never blocks the others. Wakes waiting pulls.
  absl::Status SetLiveWorkers(const std::string& job_id, const std::vector<int>& ranks);

  // Starts a push of `worker`'s gradient for `clock`. NOT_FOUND for an
  // unknown job, INVALID_ARGUMENT for a negative worker or clock,
  // FAILED_PRECONDITION when the worker is not live, CANCELLED after Shutdown.
  absl::StatusOr<std::unique_ptr<PushSession>> BeginPush(const std::string& job_id, int worker,
                                                         int64_t clock);

  // One stream of a push that `worker` split over `parts` streams (one per
  // channel), named by the client's `push_id`: the first stream to arrive
  // opens the session, the others join it. A worker has at most two pushes
  // open: this one and, when `prior_push_id` is not 0, the push before it,
  // whose answers it has not had yet (its other parts may still be on their
  // way). So the stream that opens a push finds the worker's open sessions
  // with any other push_id abandoned: they are failed (ABORTED) and dropped
  // (a stream that joins an open push drops nothing), as are those of
  // workers that leave the live set, on DropJob and on Shutdown. (A stream
  // of a push the client had already given up on that arrives late fails
  // the worker's newer push the same way; the client sees ABORTED, and
  // nothing partial is applied.)
  // parts == 1 is BeginPush. Errors as BeginPush; INVALID_ARGUMENT for parts
  // outside [1, kMaxPushParts], a stream that disagrees with the session on
  // clock or parts, or one stream more than `parts`.
  absl::StatusOr<std::shared_ptr<PushSession>> JoinPush(const std::string& job_id, int worker,
                                                        int64_t clock, uint64_t push_id,
                                                        int parts, uint64_t prior_push_id = 0);

  // Reads `slices` (each inside one slice held here) for `worker` at `clock`,
  // waiting per the job's mode (see the class comment) until `deadline`.
  // Each slice's values are copied under its lock, with its version.
  // `out` is resized to slices.size() and its buffers reused.
  // NOT_FOUND for an unknown job or tensor; INVALID_ARGUMENT for a range not
  // inside a slice held here, an empty request or a negative clock;
  // DEADLINE_EXCEEDED naming the job, slice, version, clock and the live
  // workers not yet pushed; ABORTED if the job is dropped and CANCELLED if
  // the store shuts down while waiting.
  absl::Status Pull(const std::string& job_id, int worker, int64_t clock,
                    absl::Span<const TensorSlice> slices, absl::Time deadline,
                    std::vector<PulledSlice>* out);

  // Pull without a snapshot: waits and checks exactly as Pull, counts the
  // pull in the job's stats, then returns a cursor that reads the values out
  // piece by piece (see PullCursor). Errors as Pull.
  absl::StatusOr<std::unique_ptr<PullCursor>> OpenPull(const std::string& job_id, int worker,
                                                       int64_t clock,
                                                       absl::Span<const TensorSlice> slices,
                                                       absl::Time deadline);

  // Counters of a job, after the steps queued before the call have run;
  // NOT_FOUND if there is no such job.
  absl::StatusOr<JobStats> Stats(const std::string& job_id) const;

  // Ids of the jobs held, sorted.
  std::vector<std::string> JobIds() const;

  // Wakes every waiter (CANCELLED) and refuses every later call. Idempotent.
  void Shutdown();

 private:
  absl::StatusOr<std::shared_ptr<internal::Job>> FindJob(const std::string& job_id) const;
  // Takes the open multi-part pushes of `job` that `drop` selects out of it
  // and fails them with `why`.
  static void DropOpenPushes(internal::Job* job, absl::FunctionRef<bool(int worker)> drop,
                             const absl::Status& why);

  const Options options_;

  std::unique_ptr<KeyedExecutor> executor_;  // reset after Shutdown in the destructor
  std::atomic<uint64_t> next_apply_key_{0};  // spreads slices over its threads

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<internal::Job>> jobs_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tessera::server

#endif  // TESSERA_SERVER_SHARD_STORE_H_
