#ifndef TESSERA_COMMON_LOGGING_H_
#define TESSERA_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tessera {

// Sets up the process's one named spdlog logger (the default logger) with a
// pattern that carries role, node id and thread id. Call once from main().
// `level` is one of trace, debug, info, warn, error, off.
absl::Status InitLogging(absl::string_view role, absl::string_view node_id,
                         absl::string_view level);

}  // namespace tessera

#endif  // TESSERA_COMMON_LOGGING_H_
