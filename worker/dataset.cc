#include "worker/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera::worker {
namespace {

constexpr uint32_t kImageMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kLabelMagic = 0x00000801;  // unsigned bytes, 1 dimension
// A garbage header must not make us allocate: reject absurd image shapes, and
// grow buffers only as bytes actually arrive.
constexpr uint32_t kMaxImagePixels = 1u << 24;
constexpr size_t kReadChunk = 1 << 20;

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A gzip stream or, transparently, a plain file (zlib reads both).
class IdxReader {
 public:
  ~IdxReader() {
    if (file_ != nullptr) gzclose(file_);
  }

  absl::Status Open(const std::string& path) {
    path_ = path;
    if (!FileExists(path)) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot open ", path, ": ", errno ? std::strerror(errno) : "out of memory"));
    }
    gzbuffer(file_, 256 * 1024);
    return absl::OkStatus();
  }

  // Reads up to `n` bytes, appending them to `out`; returns how many arrived
  // (fewer only at the end of the data).
  absl::StatusOr<size_t> Read(size_t n, std::string* out) {
    size_t got = 0;
    while (got < n) {
      const size_t want = std::min(kReadChunk, n - got);
      const size_t old_size = out->size();
      out->resize(old_size + want);
      const int r = gzread(file_, out->data() + old_size, static_cast<unsigned>(want));
      if (r < 0) {
        out->resize(old_size);
        return ReadError();
      }
      out->resize(old_size + static_cast<size_t>(r));
      got += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < want) {
        // A short read is either the end or an error zlib reports on the next call.
        int errnum = Z_OK;
        gzerror(file_, &errnum);
        if (errnum != Z_OK) return ReadError();
        break;
      }
    }
    return got;
  }

  // Reads exactly `n` bytes of `what` or fails with DATA_LOSS.
  absl::Status ReadExactly(size_t n, const char* what, std::string* out) {
    TESSERA_ASSIGN_OR_RETURN(const size_t got, Read(n, out));
    if (got < n) {
      return absl::DataLossError(absl::StrCat(path_, " is truncated: ", what, " needs ", n,
                                              " bytes, the file has ", got));
    }
    return absl::OkStatus();
  }

  const std::string& path() const { return path_; }

 private:
  absl::Status ReadError() {
    int errnum = Z_OK;
    const char* message = gzerror(file_, &errnum);
    if (errnum == Z_ERRNO) {
      return absl::UnavailableError(absl::StrCat("reading ", path_, ": ", std::strerror(errno)));
    }
    // Z_BUF_ERROR is "unexpected end of file"; Z_DATA_ERROR a corrupt stream.
    return absl::DataLossError(absl::StrCat(path_, " is truncated or corrupt (gzip: ",
                                            message != nullptr ? message : "unknown error", ")"));
  }

  std::string path_;
  gzFile file_ = nullptr;
};

uint32_t BigEndian32(const std::string& bytes, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Reads the magic number and the `dims` dimension sizes that follow it.
absl::Status ReadHeader(IdxReader& reader, uint32_t expected_magic, const char* kind, int dims,
                        std::vector<uint32_t>* sizes) {
  std::string header;
  TESSERA_ASSIGN_OR_RETURN(const size_t got, reader.Read(4, &header));
  const uint32_t magic = got == 4 ? BigEndian32(header, 0) : 0;
  if (got < 4 || magic != expected_magic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is not an IDX %s file: %s; expected 0x%08x", reader.path(), kind,
        got < 4 ? absl::StrCat("only ", got, " bytes") : absl::StrFormat("magic 0x%08x", magic),
        expected_magic));
  }
  TESSERA_RETURN_IF_ERROR(reader.ReadExactly(4 * dims, "the IDX header", &header));
  sizes->clear();
  for (int d = 0; d < dims; ++d) sizes->push_back(BigEndian32(header, 4 + 4 * d));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Dataset> LoadIdx(const std::string& images_path, const std::string& labels_path,
                                int64_t limit) {
  if (limit < 0) return absl::InvalidArgumentError(absl::StrCat("negative limit ", limit));

  IdxReader images;
  TESSERA_RETURN_IF_ERROR(images.Open(images_path));
  std::vector<uint32_t> image_dims;
  TESSERA_RETURN_IF_ERROR(ReadHeader(images, kImageMagic, "image", 3, &image_dims));
  const uint32_t count = image_dims[0], rows = image_dims[1], cols = image_dims[2];
  if (rows == 0 || cols == 0 || uint64_t{rows} * cols > kMaxImagePixels) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, " has images of ", rows, " x ",
                                                   cols, " pixels; expected 1 to ",
                                                   kMaxImagePixels, " pixels"));
  }

  IdxReader labels;
  TESSERA_RETURN_IF_ERROR(labels.Open(labels_path));
  std::vector<uint32_t> label_dims;
  TESSERA_RETURN_IF_ERROR(ReadHeader(labels, kLabelMagic, "label", 1, &label_dims));
  if (label_dims[0] != count) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, " holds ", count, " images but ",
                                                   labels_path, " holds ", label_dims[0],
                                                   " labels"));
  }

  const int64_t size = limit == 0 ? int64_t{count} : std::min<int64_t>(count, limit);
  const int dim = static_cast<int>(rows * cols);
  std::string pixels;
  TESSERA_RETURN_IF_ERROR(
      images.ReadExactly(static_cast<size_t>(size) * dim, "the image data", &pixels));
  std::string label_bytes;
  TESSERA_RETURN_IF_ERROR(
      labels.ReadExactly(static_cast<size_t>(size), "the label data", &label_bytes));

  Dataset data;
  data.size = size;
  data.dim = dim;
  data.features.resize(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) {
    data.features[i] = static_cast<float>(static_cast<unsigned char>(pixels[i])) / 255.0f;
  }
  data.labels.resize(static_cast<size_t>(size));
  int max_label = -1;
  for (int64_t i = 0; i < size; ++i) {
    data.labels[i] = static_cast<unsigned char>(label_bytes[i]);
    max_label = std::max(max_label, data.labels[i]);
  }
  // Unsigned-byte labels stay below 256; the bound guards other label types.
  if (max_label + 1 > kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, " has label ", max_label,
                                                   "; at most ", kMaxClasses,
                                                   " classes are supported"));
  }
  data.num_classes = std::max(kMinIdxClasses, max_label + 1);
  return data;
}

absl::StatusOr<Dataset> LoadIdxSplit(const std::string& dir, bool train, int64_t limit) {
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& name) -> absl::StatusOr<std::string> {
    const std::string plain = absl::StrCat(dir, "/", name);
    if (FileExists(plain)) return plain;
    const std::string gz = absl::StrCat(plain, ".gz");
    if (FileExists(gz)) return gz;
    return absl::NotFoundError(absl::StrCat(
        "no such file: ", plain, "[.gz] (install the dataset-fashion-mnist package or set "
        "data.path to a directory of MNIST-style IDX files)"));
  };
  TESSERA_ASSIGN_OR_RETURN(const std::string images, find(prefix + "-images-idx3-ubyte"));
  TESSERA_ASSIGN_OR_RETURN(const std::string labels, find(prefix + "-labels-idx1-ubyte"));
  return LoadIdx(images, labels, limit);
}

Range ShardOf(int64_t n, int rank, int num_workers) {
  return SplitEvenly(static_cast<uint64_t>(n), num_workers)[rank];
}

void Gather(const Dataset& data, absl::Span<const int64_t> indices, std::vector<float>* x,
            std::vector<int32_t>* y) {
  const size_t dim = static_cast<size_t>(data.dim);
  x->resize(indices.size() * dim);
  y->resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t e = indices[i];
    std::copy_n(data.features.data() + static_cast<size_t>(e) * dim, dim, x->data() + i * dim);
    (*y)[i] = data.labels[e];
  }
}

BatchSampler::BatchSampler(Range shard, int batch_size, uint64_t seed, int rank)
    : shard_(shard), batch_size_(batch_size), seed_(seed), rank_(rank) {}

int64_t BatchSampler::StepsPerEpoch(int64_t n, int num_workers, int batch) {
  // SplitEvenly gives the last ranks the smallest shards: floor(n / workers).
  const int64_t smallest = n / num_workers;
  if (smallest == 0) return 0;
  return std::max<int64_t>(1, smallest / batch);
}

int64_t BatchSampler::StepsPerEpoch() const {
  const int64_t n = static_cast<int64_t>(shard_.size());
  if (n == 0) return 0;
  return std::max<int64_t>(1, n / batch_size_);
}

void BatchSampler::StartEpoch(int epoch) {
  order_.resize(shard_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(shard_.begin + i);
  // One stream per (seed, rank, epoch); seed_seq mixes all three words.
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32),
                    static_cast<uint32_t>(rank_), static_cast<uint32_t>(epoch)};
  std::mt19937_64 rng(seq);
  // Fisher-Yates with an explicit unbiased draw: std::shuffle and
  // std::uniform_int_distribution differ between standard libraries.
  for (size_t i = order_.size(); i > 1; --i) {
    const uint64_t bound = i;
    const uint64_t reject_above = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
      r = rng();
    } while (r >= reject_above);
    std::swap(order_[i - 1], order_[r % bound]);
  }
}

void BatchSampler::Batch(int64_t step_in_epoch, std::vector<int64_t>* indices) const {
  indices->resize(static_cast<size_t>(batch_size_));
  const uint64_t n = order_.size();
  uint64_t pos = (static_cast<uint64_t>(step_in_epoch) * batch_size_) % n;
  for (int i = 0; i < batch_size_; ++i) {
    (*indices)[i] = order_[pos];
    if (++pos == n) pos = 0;
  }
}

}  // namespace tessera::worker
