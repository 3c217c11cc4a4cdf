#include "tools/recover_args.h"

#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace once::recover {
namespace {

constexpr const char* kStringFlags[] = {"data_dir", "commit", "abort", "reason"};

bool IsStringFlag(absl::string_view name) {
  for (const char* f : kStringFlags) {
    if (name == f) return true;
  }
  return false;
}

std::string Dashed(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

}  // namespace

const char* UsageText() {
  return "once-recover --data-dir DIR COMMAND [--json]\n"
         "Inspects and repairs the 2PC coordinator's state (DIR/coordinator.db) while onced\n"
         "is stopped. It takes DIR/LOCK like onced does, so it refuses to run beside one.\n"
         "\n"
         "Commands:\n"
         "  list                         unfinished (committed, not done) transactions\n"
         "  show TXN                     one transaction: fields, messages, audit entries\n"
         "  verify                       check the invariants between coordinator.db and the\n"
         "                               broker's store; each failure is printed\n"
         "  resolve                      re-drive every unfinished transaction offline: delete\n"
         "                               its batch in the broker (idempotent) and mark it so;\n"
         "                               onced re-sends COMMIT when the participant reconnects\n"
         "  resolve --commit TXN --reason TEXT\n"
         "                               finish a committed transaction for good (broker delete\n"
         "                               + done), for a participant that will never return\n"
         "  resolve --abort TXN --reason TEXT\n"
         "                               record an operator's abort of a transaction without a\n"
         "                               COMMIT record (refused when it has one: after the\n"
         "                               commit point the outcome can only be commit)\n"
         "\n"
         "Flags:\n"
         "  --data-dir DIR   the data directory of the stopped onced (env ONCE_DATA_DIR)\n"
         "  --json           print one JSON document instead of text\n"
         "\n"
         "Exit codes:\n"
         "  0  success (verify: every invariant holds)\n"
         "  1  verify: an invariant does not hold\n"
         "  2  usage error, or an I/O or store error (missing or damaged files)\n"
         "  3  the data directory is locked by a running onced\n"
         "  4  refused (e.g. --abort of a committed transaction) or no such transaction\n";
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") return false;
    if (a == "-h" || a == "--help" || a == "-help" || a == "--helpfull" || a == "--helpshort") {
      return true;
    }
  }
  return false;
}

absl::Status PrecheckFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") return absl::OkStatus();
    if (arg.size() < 2 || arg[0] != '-') continue;  // positional ("-" alone too)
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    absl::string_view name = body.substr(0, body.find('='));
    const bool has_value = body.find('=') != absl::string_view::npos;
    const std::string shown = Dashed(name);
    if (IsStringFlag(name)) {
      if (!has_value && i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", shown, " needs a value"));
      }
      absl::string_view value = has_value ? body.substr(body.find('=') + 1) : argv[i + 1];
      if (!has_value) ++i;  // the value is the next argument
      if (value.empty()) {
        // An empty --abort= would otherwise silently become a plain resolve.
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", shown, " needs a non-empty value"));
      }
      continue;
    }
    if (name == "json" || name == "nojson") {
      if (has_value) {
        absl::string_view v = body.substr(body.find('=') + 1);
        if (v != "true" && v != "false" && v != "1" && v != "0") {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", shown, " takes no value (or true/false), not '", v, "'"));
        }
      }
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown flag --", shown, "; see --help"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args,
                                     const FlagValues& flags) {
  if (args.empty()) {
    return absl::InvalidArgumentError("no command: expected list, show TXN, verify or resolve");
  }
  if (!flags.data_dir_given || flags.data_dir.empty()) {
    return absl::InvalidArgumentError("--data-dir DIR is required (or env ONCE_DATA_DIR)");
  }
  Command c;
  c.data_dir = flags.data_dir;
  c.json = flags.json;
  c.reason = flags.reason;
  const std::string& name = args[0];
  const bool resolve_flags = !flags.commit.empty() || !flags.abort.empty();
  auto no_extra = [&](size_t expected) -> absl::Status {
    if (args.size() > expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", name, "' takes ", expected - 1, " argument(s); unexpected '", args[expected], "'"));
    }
    return absl::OkStatus();
  };
  if (name == "list" || name == "verify" || name == "show") {
    if (resolve_flags || !flags.reason.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--commit, --abort and --reason belong to 'resolve', not '", name, "'"));
    }
  }
  if (name == "list") {
    c.kind = CommandKind::kList;
    if (absl::Status s = no_extra(1); !s.ok()) return s;
  } else if (name == "verify") {
    c.kind = CommandKind::kVerify;
    if (absl::Status s = no_extra(1); !s.ok()) return s;
  } else if (name == "show") {
    c.kind = CommandKind::kShow;
    if (args.size() < 2 || args[1].empty()) {
      return absl::InvalidArgumentError("'show' takes a TXN (e.g. show 3.17)");
    }
    if (absl::Status s = no_extra(2); !s.ok()) return s;
    c.txn = args[1];
  } else if (name == "resolve") {
    c.kind = CommandKind::kResolve;
    if (absl::Status s = no_extra(1); !s.ok()) return s;
    if (!flags.commit.empty() && !flags.abort.empty()) {
      return absl::InvalidArgumentError("resolve takes --commit TXN or --abort TXN, not both");
    }
    if (resolve_flags && flags.reason.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("resolve --", flags.commit.empty() ? "abort" : "commit",
                       " needs --reason TEXT (it is recorded in the audit log)"));
    }
    c.force_commit = !flags.commit.empty();
    c.force_abort = !flags.abort.empty();
    c.txn = c.force_commit ? flags.commit : flags.abort;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command '", name, "': expected list, show TXN, verify or resolve"));
  }
  return c;
}

}  // namespace once::recover
