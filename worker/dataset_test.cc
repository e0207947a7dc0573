#include "worker/dataset.h"

#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera::worker {
namespace {

using ::testing::HasSubstr;

std::string BigEndian(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

std::string ImageHeader(uint32_t count, uint32_t rows, uint32_t cols) {
  return BigEndian(0x803) + BigEndian(count) + BigEndian(rows) + BigEndian(cols);
}

std::string LabelHeader(uint32_t count) { return BigEndian(0x801) + BigEndian(count); }

// A small synthetic IDX data set: random pixels, labels 0..9.
struct IdxFiles {
  int count = 0, rows = 0, cols = 0;
  std::string pixels;  // count * rows * cols
  std::string labels;  // count
  std::string image_file() const { return ImageHeader(count, rows, cols) + pixels; }
  std::string label_file() const { return LabelHeader(count) + labels; }
};

IdxFiles MakeIdx(int count, int rows, int cols, uint64_t seed) {
  IdxFiles f;
  f.count = count;
  f.rows = rows;
  f.cols = cols;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count * rows * cols; ++i) f.pixels.push_back(static_cast<char>(rng()));
  for (int i = 0; i < count; ++i) f.labels.push_back(static_cast<char>(rng() % 10));
  f.labels[0] = 9;  // the largest class is present
  return f;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/dataset_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : written_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    written_.push_back(path);
    return path;
  }

  std::string WriteGz(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    gzclose(f);
    written_.push_back(path);
    return path;
  }

  static std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  void ExpectMatches(const Dataset& d, const IdxFiles& f, int64_t size) {
    EXPECT_EQ(d.size, size);
    EXPECT_EQ(d.dim, f.rows * f.cols);
    EXPECT_EQ(d.num_classes, 10);
    ASSERT_EQ(d.features.size(), static_cast<size_t>(size * d.dim));
    ASSERT_EQ(d.labels.size(), static_cast<size_t>(size));
    for (size_t i = 0; i < d.features.size(); ++i) {
      ASSERT_FLOAT_EQ(d.features[i], static_cast<unsigned char>(f.pixels[i]) / 255.0f) << i;
    }
    for (int64_t i = 0; i < size; ++i) {
      ASSERT_EQ(d.labels[i], static_cast<unsigned char>(f.labels[i])) << i;
    }
  }

  std::string dir_;
  std::vector<std::string> written_;
};

TEST_F(DatasetTest, LoadsPlainAndGzippedFiles) {
  const IdxFiles f = MakeIdx(25, 4, 3, 1);
  const std::string img = Write("img", f.image_file()), lbl = Write("lbl", f.label_file());
  const std::string img_gz = WriteGz("img.gz", f.image_file());
  const std::string lbl_gz = WriteGz("lbl.gz", f.label_file());

  absl::StatusOr<Dataset> plain = LoadIdx(img, lbl, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ExpectMatches(*plain, f, 25);

  absl::StatusOr<Dataset> gz = LoadIdx(img_gz, lbl_gz, 0);
  ASSERT_TRUE(gz.ok()) << gz.status();
  ExpectMatches(*gz, f, 25);

  absl::StatusOr<Dataset> mixed = LoadIdx(img_gz, lbl, 0);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  ExpectMatches(*mixed, f, 25);
}

TEST_F(DatasetTest, LimitKeepsTheFirstExamples) {
  const IdxFiles f = MakeIdx(25, 4, 3, 2);
  const std::string img = WriteGz("img.gz", f.image_file()), lbl = Write("lbl", f.label_file());
  absl::StatusOr<Dataset> d = LoadIdx(img, lbl, 7);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectMatches(*d, f, 7);
  d = LoadIdx(img, lbl, 1000);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectMatches(*d, f, 25);
  EXPECT_EQ(LoadIdx(img, lbl, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetTest, NumClassesFollowsTheLargestLabel) {
  IdxFiles f = MakeIdx(5, 2, 2, 3);
  f.labels[3] = 42;
  absl::StatusOr<Dataset> d =
      LoadIdx(Write("img", f.image_file()), Write("lbl", f.label_file()), 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_classes, 43);
  // Fewer than 10 distinct labels still reports 10 classes.
  f.labels = std::string(5, '\1');
  d = LoadIdx(Write("img", f.image_file()), Write("lbl", f.label_file()), 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_classes, 10);
}

TEST_F(DatasetTest, SplitFindsPlainOrGzippedFiles) {
  const IdxFiles train = MakeIdx(12, 3, 3, 4), test = MakeIdx(6, 3, 3, 5);
  Write("train-images-idx3-ubyte", train.image_file());
  WriteGz("train-labels-idx1-ubyte.gz", train.label_file());
  WriteGz("t10k-images-idx3-ubyte.gz", test.image_file());
  WriteGz("t10k-labels-idx1-ubyte.gz", test.label_file());
  absl::StatusOr<Dataset> d = LoadIdxSplit(dir_, /*train=*/true, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectMatches(*d, train, 12);
  d = LoadIdxSplit(dir_, /*train=*/false, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectMatches(*d, test, 4);
}

TEST_F(DatasetTest, MissingFilesAreNotFoundWithAHint) {
  absl::StatusOr<Dataset> d = LoadIdxSplit(dir_ + "/nowhere", true, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr(dir_ + "/nowhere/train-images-idx3-ubyte"));
  EXPECT_THAT(d.status().message(), HasSubstr("dataset-fashion-mnist"));

  const IdxFiles f = MakeIdx(3, 2, 2, 6);
  const std::string img = Write("img", f.image_file());
  d = LoadIdx(img, dir_ + "/no-labels", 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr(dir_ + "/no-labels"));
}

TEST_F(DatasetTest, GarbageIsAnErrorNamingTheFile) {
  const IdxFiles f = MakeIdx(10, 4, 4, 7);
  const std::string lbl = Write("lbl", f.label_file());
  std::mt19937_64 rng(8);
  std::string random_bytes;
  for (int i = 0; i < 5000; ++i) random_bytes.push_back(static_cast<char>(rng()));

  struct Case {
    std::string name, bytes;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"random", random_bytes, absl::StatusCode::kInvalidArgument, "is not an IDX image file"},
      {"empty", "", absl::StatusCode::kInvalidArgument, "is not an IDX image file"},
      {"text", "label,pixel0,pixel1\n3,0,255\n", absl::StatusCode::kInvalidArgument,
       "expected 0x00000803"},
      {"labels-as-images", f.label_file(), absl::StatusCode::kInvalidArgument,
       "magic 0x00000801"},
      {"short-header", ImageHeader(10, 4, 4).substr(0, 9), absl::StatusCode::kDataLoss,
       "truncated"},
      {"short-data", f.image_file().substr(0, 16 + 4 * 16 + 3), absl::StatusCode::kDataLoss,
       "truncated"},
      {"huge-count", ImageHeader(4000000000u, 28, 28) + f.pixels, absl::StatusCode::kInvalidArgument,
       "labels"},  // count mismatch with the 10 labels, before reading any pixels
      {"zero-rows", ImageHeader(10, 0, 4), absl::StatusCode::kInvalidArgument, "0 x 4"},
      {"huge-image", ImageHeader(10, 65536, 65536), absl::StatusCode::kInvalidArgument,
       "pixels"},
      {"fake-gzip", std::string("\x1f\x8b\x08\x00", 4) + random_bytes,
       absl::StatusCode::kDataLoss, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write(c.name, c.bytes);
    absl::StatusOr<Dataset> d = LoadIdx(path, lbl, 0);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), c.code) << d.status();
    EXPECT_THAT(d.status().message(), HasSubstr(path));
    EXPECT_THAT(d.status().message(), HasSubstr(c.message));
  }
}

TEST_F(DatasetTest, HugeCountWithMatchingLabelsIsTruncatedNotAnAllocation) {
  const IdxFiles f = MakeIdx(10, 28, 28, 9);
  const std::string img = Write("img", ImageHeader(4000000000u, 28, 28) + f.pixels);
  const std::string lbl = Write("lbl", LabelHeader(4000000000u) + f.labels);
  absl::StatusOr<Dataset> d = LoadIdx(img, lbl, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(img));
}

TEST_F(DatasetTest, TruncatedGzipAndLabelErrors) {
  const IdxFiles f = MakeIdx(40, 8, 8, 10);
  const std::string whole = WriteGz("whole.gz", f.image_file());
  const std::string gz_bytes = ReadAll(whole);
  const std::string cut = Write("cut.gz", gz_bytes.substr(0, gz_bytes.size() / 2));
  const std::string lbl = Write("lbl", f.label_file());
  absl::StatusOr<Dataset> d = LoadIdx(cut, lbl, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(cut));

  const std::string img = Write("img", f.image_file());
  const std::string short_labels = Write("short", f.label_file().substr(0, 8 + 20));
  d = LoadIdx(img, short_labels, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(short_labels));

  const std::string fewer = Write("fewer", LabelHeader(39) + f.labels.substr(0, 39));
  d = LoadIdx(img, fewer, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("40 images"));
  EXPECT_THAT(d.status().message(), HasSubstr("39 labels"));

  const std::string images_as_labels = Write("img-as-lbl", f.image_file());
  d = LoadIdx(img, images_as_labels, 0);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("is not an IDX label file"));
}

TEST(DatasetRealTest, LoadsInstalledFashionMnistSlice) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  std::ifstream probe(dir + "/t10k-images-idx3-ubyte.gz");
  if (!probe) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  absl::StatusOr<Dataset> d = LoadIdxSplit(dir, /*train=*/false, 500);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size, 500);
  EXPECT_EQ(d->dim, 784);
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->labels[0], 9);  // the first t10k image is an ankle boot
  const auto [lo, hi] = std::minmax_element(d->features.begin(), d->features.end());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 1.0f);
}

TEST(ShardTest, ShardsAreContiguousAndCoverEverything) {
  for (int64_t n : {0, 1, 7, 100, 60000}) {
    for (int workers : {1, 2, 3, 7}) {
      uint64_t next = 0;
      for (int r = 0; r < workers; ++r) {
        const Range s = ShardOf(n, r, workers);
        EXPECT_EQ(s.begin, next);
        EXPECT_LE(s.size(), static_cast<uint64_t>(n / workers + 1));
        EXPECT_GE(s.size(), static_cast<uint64_t>(n / workers));
        next = s.end;
      }
      EXPECT_EQ(next, static_cast<uint64_t>(n));
    }
  }
}

TEST(BatchSamplerTest, StepsPerEpochIsTheSameForEveryWorker) {
  EXPECT_EQ(BatchSampler::StepsPerEpoch(100, 3, 10), 3);   // shards 34, 33, 33
  EXPECT_EQ(BatchSampler::StepsPerEpoch(60000, 2, 64), 468);
  EXPECT_EQ(BatchSampler::StepsPerEpoch(60000, 1, 64), 937);
  EXPECT_EQ(BatchSampler::StepsPerEpoch(5, 3, 10), 1);     // smallest shard 1 < batch
  EXPECT_EQ(BatchSampler::StepsPerEpoch(2, 3, 10), 0);     // one shard is empty
  EXPECT_EQ(BatchSampler::StepsPerEpoch(0, 1, 10), 0);
  BatchSampler s(Range{10, 45}, 10, 1, 0);
  EXPECT_EQ(s.StepsPerEpoch(), 3);
}

std::vector<int64_t> EpochOrder(BatchSampler& s, int epoch, int steps) {
  s.StartEpoch(epoch);
  std::vector<int64_t> all, batch;
  for (int i = 0; i < steps; ++i) {
    s.Batch(i, &batch);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

TEST(BatchSamplerTest, EpochIsADeterministicPermutationOfTheShard) {
  const Range shard{100, 160};
  BatchSampler a(shard, 6, 42, 1), b(shard, 6, 42, 1);
  const std::vector<int64_t> order = EpochOrder(a, 0, 10);
  EXPECT_EQ(order, EpochOrder(b, 0, 10));
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 60; ++i) EXPECT_EQ(sorted[i], 100 + i);
  EXPECT_NE(order, sorted);  // actually shuffled

  EXPECT_NE(EpochOrder(a, 1, 10), order);  // reshuffled each epoch
  EXPECT_EQ(EpochOrder(a, 0, 10), order);  // and reproducible
  BatchSampler other_rank(shard, 6, 42, 2), other_seed(shard, 6, 43, 1);
  EXPECT_NE(EpochOrder(other_rank, 0, 10), order);
  EXPECT_NE(EpochOrder(other_seed, 0, 10), order);
}

TEST(BatchSamplerTest, OrderIsPinnedAcrossPlatforms) {
  // mt19937_64 seeded through seed_seq and our own Fisher-Yates are fully
  // specified, so this order must never change (it would break resumed jobs
  // and cross-machine reproducibility).
  BatchSampler s(Range{0, 10}, 10, 42, 0);
  EXPECT_EQ(EpochOrder(s, 0, 1), (std::vector<int64_t>{0, 6, 5, 1, 3, 9, 7, 8, 4, 2}));
}

TEST(BatchSamplerTest, SmallShardWrapsToAFullBatch) {
  BatchSampler s(Range{5, 8}, 8, 1, 0);
  EXPECT_EQ(s.StepsPerEpoch(), 1);
  s.StartEpoch(0);
  std::vector<int64_t> batch;
  s.Batch(0, &batch);
  ASSERT_EQ(batch.size(), 8u);
  EXPECT_EQ(std::set<int64_t>(batch.begin(), batch.end()), (std::set<int64_t>{5, 6, 7}));
  for (size_t i = 3; i < batch.size(); ++i) EXPECT_EQ(batch[i], batch[i - 3]);
}

TEST(GatherTest, CopiesRowsAndLabels) {
  Dataset d;
  d.size = 4;
  d.dim = 3;
  d.num_classes = 10;
  d.features = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
  d.labels = {5, 6, 7, 8};
  std::vector<float> x = {99};
  std::vector<int32_t> y;
  const std::vector<int64_t> idx = {3, 0, 3};
  Gather(d, idx, &x, &y);
  EXPECT_EQ(x, (std::vector<float>{30, 31, 32, 0, 1, 2, 30, 31, 32}));
  EXPECT_EQ(y, (std::vector<int32_t>{8, 5, 8}));
}

}  // namespace
}  // namespace tessera::worker
