#ifndef TESSERA_COMMON_FILE_UTIL_H_
#define TESSERA_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tessera {

// Reads a whole file. NOT_FOUND when it does not exist, otherwise the errno text.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` through a temporary file and rename(), so a
// reader never sees a partial file.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// The folder holding the running program (from /proc/self/exe), where the
// CLI looks for its sibling binaries; "." if it cannot be read.
std::string ExecutableDir();

}  // namespace tessera

#endif  // TESSERA_COMMON_FILE_UTIL_H_
