#ifndef TESSERA_COMMON_FILE_UTIL_H_
#define TESSERA_COMMON_FILE_UTIL_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera {

// Reads a whole file. NOT_FOUND when it does not exist, otherwise the errno text.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` through a temporary file and rename(), so a
// reader never sees a partial file.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// A new empty folder <base>/<prefix>-XXXXXX, base being $TEST_TMPDIR, else
// $TMPDIR, else /tmp; removed with all it holds when this goes, unless Keep()
// was called. Movable, not copyable.
class ScopedTempDir {
 public:
  static absl::StatusOr<ScopedTempDir> Create(absl::string_view prefix);
  ScopedTempDir(ScopedTempDir&& other) noexcept;
  ScopedTempDir& operator=(ScopedTempDir&& other) noexcept;
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  ~ScopedTempDir();

  const std::string& path() const { return path_; }
  // Leaves the folder in place when this goes.
  void Keep() { keep_ = true; }

 private:
  explicit ScopedTempDir(std::string path) : path_(std::move(path)) {}
  void Remove();

  std::string path_;  // empty once moved from
  bool keep_ = false;
};

// The folder holding the running program (from /proc/self/exe), where the
// CLI looks for its sibling binaries; "." if it cannot be read.
std::string ExecutableDir();

}  // namespace tessera

#endif  // TESSERA_COMMON_FILE_UTIL_H_
