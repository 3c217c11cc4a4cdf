// once-recover's commands. Each runs on an open Session (the data
// directory locked) and returns its Output (text, JSON and exit code), or
// an error Status for a usage, I/O or store problem (exit code 2).
// list and show: recover_inspect.cc; verify: recover_verify.cc; resolve:
// recover_resolve.cc.
#ifndef ONCE_TOOLS_RECOVER_COMMANDS_H_
#define ONCE_TOOLS_RECOVER_COMMANDS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "tools/recover_args.h"
#include "tools/recover_format.h"
#include "tools/recover_session.h"

namespace once::recover {

// The actor recorded in the audit entries of once-recover.
inline constexpr char kActor[] = "once-recover";

// Unfinished (committed, not done) txns, oldest first, with a summary line.
absl::StatusOr<Output> RunList(Session& session, const Command& command, int64_t now_ms);
// One txn: every field, its messages and its audit entries; kExitRefused
// when there is no record of it (its audit entries are still shown).
absl::StatusOr<Output> RunShow(Session& session, const Command& command, int64_t now_ms);
// The invariants between coordinator.db and the broker: kExitInvariant
// when any fails (each failure listed). Progress on stderr.
absl::StatusOr<Output> RunVerify(Session& session, const Command& command, int64_t now_ms);
// The offline re-drive, or a forced commit / audited abort of one txn.
absl::StatusOr<Output> RunResolve(Session& session, const Command& command, int64_t now_ms);

}  // namespace once::recover

#endif  // ONCE_TOOLS_RECOVER_COMMANDS_H_
