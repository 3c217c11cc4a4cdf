// once-recover: the operator's tool for the 2PC coordinator's state of a
// STOPPED onced (DESIGN.md §4): list / show unfinished transactions, verify
// the invariants between coordinator.db and the broker, resolve offline.
// It takes the data directory's lock like onced, so it never runs beside
// one (exit 3). Exit codes: tools/recover_args.h and --help.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "boost/json/serialize.hpp"
#include "schema/clock.h"
#include "schema/command_line.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/recover_args.h"
#include "tools/recover_commands.h"
#include "tools/recover_session.h"

ABSL_FLAG(std::string, data_dir, "", "the stopped onced's data directory (env ONCE_DATA_DIR)");
ABSL_FLAG(std::string, commit, "", "resolve: finish this committed txn for good");
ABSL_FLAG(std::string, abort, "", "resolve: record an abort of this txn (no COMMIT record)");
ABSL_FLAG(std::string, reason, "", "resolve: why (recorded in the audit log)");
ABSL_FLAG(bool, json, false, "print one JSON document");

namespace once::recover {
namespace {

bool JsonRequested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a == "--json" || a == "-json" || a == "--json=true" || a == "--json=1") return true;
  }
  return false;
}

// Prints an error the way the output mode asks and returns `code`.
int Fail(bool json, int code, const absl::Status& status) {
  std::fprintf(stderr, "once-recover: %s\n", status.ToString().c_str());
  if (json) {
    boost::json::object error;
    error["code"] = absl::StatusCodeToString(status.code());
    error["message"] = std::string(status.message());
    error["exit_code"] = code;
    boost::json::object doc;
    doc["error"] = std::move(error);
    std::printf("%s\n", boost::json::serialize(doc).c_str());
  }
  return code;
}

int Run(const Command& command) {
  absl::StatusOr<std::unique_ptr<Session>> session = Session::Open(command.data_dir);
  if (!session.ok()) {
    return Fail(command.json, Session::IsLockedError(session.status()) ? kExitLocked : kExitUsage,
                session.status());
  }
  const int64_t now_ms = SystemClock()->NowMs();
  absl::StatusOr<Output> out;
  switch (command.kind) {
    case CommandKind::kList:
      out = RunList(**session, command, now_ms);
      break;
    case CommandKind::kShow:
      out = RunShow(**session, command, now_ms);
      break;
    case CommandKind::kVerify:
      out = RunVerify(**session, command, now_ms);
      break;
    case CommandKind::kResolve:
      out = RunResolve(**session, command, now_ms);
      break;
  }
  if (!out.ok()) return Fail(command.json, kExitUsage, out.status());
  if (command.json) {
    out->json["exit_code"] = out->exit_code;
    std::printf("%s\n", boost::json::serialize(out->json).c_str());
  } else {
    std::fputs(out->text.c_str(), stdout);
  }
  return out->exit_code;
}

}  // namespace
}  // namespace once::recover

int main(int argc, char** argv) {
  using namespace once::recover;
  absl::SetProgramUsageMessage(UsageText());
  // stdout is the answer (text or one JSON document); what the broker logs
  // while opening goes to stderr.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("once-recover"));
  once::NormalizeFlagDashes(argc, argv);
  const bool json = JsonRequested(argc, argv);
  if (WantsHelp(argc, argv)) {
    std::fputs(UsageText(), stdout);
    return kExitOk;
  }
  // Abseil exits with 1 on a bad flag; 1 means "invariant violated" here.
  if (absl::Status s = PrecheckFlags(argc, argv); !s.ok()) return Fail(json, kExitUsage, s);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  FlagValues flags;
  flags.data_dir = absl::GetFlag(FLAGS_data_dir);
  if (flags.data_dir.empty()) {
    if (const char* env = std::getenv("ONCE_DATA_DIR"); env != nullptr) flags.data_dir = env;
  }
  flags.data_dir_given = !flags.data_dir.empty();
  flags.commit = absl::GetFlag(FLAGS_commit);
  flags.abort = absl::GetFlag(FLAGS_abort);
  flags.reason = absl::GetFlag(FLAGS_reason);
  flags.json = absl::GetFlag(FLAGS_json);
  absl::StatusOr<Command> command =
      ParseCommand(std::vector<std::string>(positional.begin() + 1, positional.end()), flags);
  if (!command.ok()) return Fail(flags.json, kExitUsage, command.status());
  return Run(*command);
}
