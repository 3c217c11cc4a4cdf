// The states of one exactly-once transaction T at the coordinator, and the
// one table of legal transitions (DESIGN.md §2, schema/model/README.md).
//
//                  PREPARE sent (nothing written: presumed abort)
//                               |
//                               v
//                        +-------------+  VoteNo, Timeout, Disconnect,
//                        |  kPreparing |  HelloPresumedAbort, ForceAbort
//                        |  (volatile) |-------------------------------+
//                        +-------------+                               |
//                               | VoteYes                              |
//                               v                                      v
//                        +-------------+  PinRefused, Timeout,  +-------------+
//                        |  kVotedYes  |  Disconnect,           |  kAborted   |
//                        |  (volatile, |  HelloPresumedAbort,   |  (volatile; |
//                        |  in a group |  ForceAbort            |  forced ones|
//                        |  commit     |----------------------->|  audited)   |
//                        |  batch)     |                        +-------------+
//                        +-------------+
//                               | DecideCommit (group commit durable),
//                               | ForceCommit (operator, audited)
//                               v
//                        +-------------+
//                        | kCommitted  |  THE COMMIT POINT: the durable COMMIT
//                        |  (durable)  |  record. From here the outcome can
//                        +-------------+  only be commit: no abort event is
//                               |         legal, COMMIT is re-sent until DONE.
//                               | Done (DONE received, B deleted in broker)
//                               v
//                        +-------------+
//                        |   kDone     |  terminal; the record is removed
//                        |  (durable)  |  lazily, in batches
//                        +-------------+
//
// kDone and kAborted are terminal: every event fails there.
//
// The numbers of TxnState are stored (coordinator.db, column txns.state) and
// must never change; add new states with new numbers.
#ifndef ONCE_COORDINATOR_TXN_STATE_H_
#define ONCE_COORDINATOR_TXN_STATE_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace once::coordinator {

enum class TxnState : uint8_t {
  kPreparing = 1,
  kVotedYes = 2,
  kCommitted = 3,
  kDone = 4,
  kAborted = 5,
};

// "preparing", "voted_yes", "committed", "done", "aborted"; "unknown" for a
// number outside the enum (e.g. a value read from a damaged file).
std::string_view TxnStateName(TxnState state);
// The inverse of TxnStateName; nullopt for any other text.
std::optional<TxnState> ParseTxnState(std::string_view name);
// The state stored as `value`, or nullopt when no state has that number.
std::optional<TxnState> TxnStateFromNumber(int64_t value);

enum class TxnEvent : uint8_t {
  kVoteYes,             // the participant voted YES
  kVoteNo,              // the participant voted NO
  kTimeout,             // no vote (or no batch slot) in time
  kDisconnect,          // the participant's connection was lost or fenced
  kHelloPresumedAbort,  // the participant's HELLO listed T and was answered ABORT
  kDecideCommit,        // the group commit holding T's COMMIT record is durable
  kPinRefused,          // the broker cannot back B at the commit point: its leases
                        // could not be pinned, or its messages not made durable
  kDone,                // DONE received and B deleted (acked) in the broker
  kForceCommit,         // operator's forced commit (audited)
  kForceAbort,          // operator's forced abort (audited)
};

// "vote_yes", "vote_no", "timeout", "disconnect", "hello_presumed_abort",
// "decide_commit", "pin_refused", "done", "force_commit", "force_abort".
std::string_view TxnEventName(TxnEvent event);

// The one transition table: the state after `event` in state `from`, or
// kFailedPrecondition naming `from` and `event` when the pair is not legal.
// Pure and thread-safe.
absl::StatusOr<TxnState> Transition(TxnState from, TxnEvent event);

// True for the states that are written to coordinator.db.
inline bool IsDurable(TxnState state) {
  return state == TxnState::kCommitted || state == TxnState::kDone;
}

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_TXN_STATE_H_
