// once-recover's command line: the exit codes, a check of the flags before
// Abseil parses them (Abseil exits with 1 on a bad flag, and 1 means "an
// invariant does not hold" here), and the command after parsing.
#ifndef ONCE_TOOLS_RECOVER_ARGS_H_
#define ONCE_TOOLS_RECOVER_ARGS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace once::recover {

// The exit codes, documented in --help.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvariant = 1;  // verify: an invariant does not hold
inline constexpr int kExitUsage = 2;      // usage, I/O or store error
inline constexpr int kExitLocked = 3;     // a running onced holds the data directory
inline constexpr int kExitRefused = 4;    // the action is refused, or no such txn

enum class CommandKind { kList, kShow, kVerify, kResolve };

struct Command {
  CommandKind kind = CommandKind::kList;
  std::string data_dir;
  std::string txn;  // show: the txn; resolve: the --commit or --abort txn
  bool force_commit = false;
  bool force_abort = false;
  std::string reason;
  bool json = false;
};

// The flags' values as Abseil parsed them.
struct FlagValues {
  std::string data_dir;
  std::string commit;
  std::string abort;
  std::string reason;
  bool json = false;
  bool data_dir_given = false;
};

// Checks the flags in argv (after NormalizeFlagDashes, before Abseil):
// every flag known, string flags with a value, --json without a value or
// with true/false. kInvalidArgument naming the flag.
absl::Status PrecheckFlags(int argc, char** argv);
// True when argv asks for help (--help, -h, --helpfull, ...).
bool WantsHelp(int argc, char** argv);

// Builds the command from the positional arguments (without argv[0]) and
// the flags. kInvalidArgument with what is wrong.
absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args, const FlagValues& flags);

// The --help text, exit codes included.
const char* UsageText();

}  // namespace once::recover

#endif  // ONCE_TOOLS_RECOVER_ARGS_H_
