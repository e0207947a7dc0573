#ifndef TESSERA_TOOLS_CLI_ARGS_H_
#define TESSERA_TOOLS_CLI_ARGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::tools {

struct FlagSpec {
  std::string name;           // without the leading --
  std::string default_value;  // "" for none
  std::string help;
  bool is_bool = false;       // --name alone means true
};

// The parsed command line of one subcommand.
struct CliArgs {
  std::map<std::string, std::string> flags;  // every declared flag, defaults filled in
  std::vector<std::string> positional;
  bool help = false;

  const std::string& Get(const std::string& name) const { return flags.at(name); }
  bool GetBool(const std::string& name) const;
  absl::StatusOr<int> GetInt(const std::string& name, int lo, int hi) const;
};

// Parses `--name=value`, `--name value`, bool `--name`, `--help`/`-h`, and
// positional arguments. An undeclared flag is INVALID_ARGUMENT naming it.
absl::StatusOr<CliArgs> ParseCliArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);

// "  --name=DEFAULT   help" lines for a usage message.
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_CLI_ARGS_H_
