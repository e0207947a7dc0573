#ifndef TESSERA_WORKER_DATASET_H_
#define TESSERA_WORKER_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/range.h"

namespace tessera::worker {

// A labelled dense data set held in memory.
struct Dataset {
  int64_t size = 0;     // examples
  int dim = 0;          // features per example (rows * cols for images)
  int num_classes = 0;  // max(kMinIdxClasses, largest label + 1)
  std::vector<float> features;  // size * dim, row-major; IDX pixels scaled to [0, 1]
  std::vector<int32_t> labels;  // size, each in [0, num_classes)
};

// IDX label sets smaller than this still report this many classes, so a small
// slice of (Fashion-)MNIST agrees with the full set and with its test split.
inline constexpr int kMinIdxClasses = 10;
inline constexpr int kMaxClasses = 1000;

// Loads an IDX image file (magic 0x00000803, unsigned bytes, N x rows x cols)
// and its IDX label file (magic 0x00000801, unsigned bytes, N). Either may be
// gzipped (detected from the content, not the name). Keeps the first `limit`
// examples; limit == 0 keeps all (limit < 0 is INVALID_ARGUMENT).
// Errors name the file:
//   NOT_FOUND         a file does not exist
//   INVALID_ARGUMENT  not an IDX file of the right kind (bad magic or shape),
//                     image and label counts differ, more than kMaxClasses
//   DATA_LOSS         the file ends before its header says, or a corrupt gzip stream
//   other             an I/O error (errno text)
absl::StatusOr<Dataset> LoadIdx(const std::string& images_path, const std::string& labels_path,
                                int64_t limit);

// Loads the train (train-*) or test (t10k-*) split of an MNIST-style directory,
// taking "<name>" or else "<name>.gz" for each file. NOT_FOUND, naming the
// missing file and how to get it, when neither exists; otherwise as LoadIdx.
absl::StatusOr<Dataset> LoadIdxSplit(const std::string& dir, bool train, int64_t limit);

// Worker `rank`'s contiguous share of n examples: [0, n) split evenly over
// num_workers, earlier ranks getting the remainder.
// REQUIRES: n >= 0, num_workers > 0, 0 <= rank < num_workers.
Range ShardOf(int64_t n, int rank, int num_workers);

// Copies the examples `indices` of `data` into x (indices.size() * dim floats)
// and y (indices.size() labels), resizing both.
// REQUIRES: every index in [0, data.size).
void Gather(const Dataset& data, absl::Span<const int64_t> indices, std::vector<float>* x,
            std::vector<int32_t>* y);

// Yields the minibatches of one worker's shard, reshuffled every epoch.
// The order depends only on (seed, rank, epoch, shard, batch_size) and is the
// same on every platform (mt19937_64 and an explicit Fisher-Yates shuffle).
// Used by one thread.
class BatchSampler {
 public:
  // REQUIRES: batch_size > 0.
  BatchSampler(Range shard, int batch_size, uint64_t seed, int rank);

  // Steps every worker runs per epoch so that all run the same number:
  // floor(smallest shard / batch), but at least 1 when the smallest shard is
  // non-empty; 0 when some worker's shard is empty.
  // REQUIRES: n >= 0, num_workers > 0, batch > 0.
  static int64_t StepsPerEpoch(int64_t n, int num_workers, int batch);

  // Reshuffles the shard's indices for `epoch`. Must be called before Batch().
  void StartEpoch(int epoch);

  // floor(shard size / batch_size), at least 1 for a non-empty shard.
  int64_t StepsPerEpoch() const;

  // Fills `indices` with exactly batch_size example indices (absolute, inside
  // the shard) for step `step_in_epoch` of the current epoch: positions
  // [step * batch, (step + 1) * batch) of the shuffled order, wrapping around
  // the shard when it is shorter than that (a shard smaller than one batch
  // repeats examples). Steps beyond StepsPerEpoch() keep wrapping.
  // REQUIRES: StartEpoch() was called, the shard is non-empty, step_in_epoch >= 0.
  void Batch(int64_t step_in_epoch, std::vector<int64_t>* indices) const;

 private:
  const Range shard_;
  const int batch_size_;
  const uint64_t seed_;
  const int rank_;
  std::vector<int64_t> order_;  // the shard's indices in this epoch's order
};

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_DATASET_H_
