#include "tools/cli_args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera::tools {

bool CliArgs::GetBool(const std::string& name) const {
  const std::string& v = flags.at(name);
  return v == "true" || v == "1" || v == "yes";
}

absl::StatusOr<int> CliArgs::GetInt(const std::string& name, int lo, int hi) const {
  int v = 0;
  if (!absl::SimpleAtoi(flags.at(name), &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, "=", flags.at(name),
                                                   ": expected an integer in ", lo, "..", hi));
  }
  return v;
}

absl::StatusOr<CliArgs> ParseCliArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs) {
  CliArgs out;
  for (const FlagSpec& s : specs) out.flags[s.name] = s.is_bool && s.default_value.empty() ? "false" : s.default_value;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    if (!absl::StartsWith(a, "--")) {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto spec = std::find_if(specs.begin(), specs.end(),
                             [&](const FlagSpec& s) { return s.name == name; });
    if (spec == specs.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_value) {
      if (spec->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    }
    out.flags[name] = value;
  }
  return out;
}

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const FlagSpec& s : specs) {
    const std::string flag =
        s.is_bool ? absl::StrCat("--", s.name)
                  : absl::StrCat("--", s.name, "=", s.default_value.empty() ? "VALUE" : s.default_value);
    absl::StrAppendFormat(&out, "  %-34s %s\n", flag, s.help);
  }
  return out;
}

}  // namespace tessera::tools
