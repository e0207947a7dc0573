#include "common/logging.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace tessera {

absl::Status InitLogging(absl::string_view role, absl::string_view node_id,
                         absl::string_view level) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level '", level, "' (trace, debug, info, warn, error, off)"));
  }
  auto logger = spdlog::stderr_color_mt(std::string(role));
  logger->set_pattern(absl::StrCat("[%Y-%m-%d %H:%M:%S.%e] [", role, " ", node_id,
                                   "] [%^%l%$] [t%t] %v"));
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace tessera
