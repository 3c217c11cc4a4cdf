#include "coordinator/txn_state.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace once::coordinator {

std::string_view TxnStateName(TxnState state) {
  switch (state) {
    case TxnState::kPreparing:
      return "preparing";
    case TxnState::kVotedYes:
      return "voted_yes";
    case TxnState::kCommitted:
      return "committed";
    case TxnState::kDone:
      return "done";
    case TxnState::kAborted:
      return "aborted";
  }
  return "unknown";
}

std::optional<TxnState> ParseTxnState(std::string_view name) {
  for (TxnState s : {TxnState::kPreparing, TxnState::kVotedYes, TxnState::kCommitted,
                     TxnState::kDone, TxnState::kAborted}) {
    if (TxnStateName(s) == name) return s;
  }
  return std::nullopt;
}

std::optional<TxnState> TxnStateFromNumber(int64_t value) {
  if (value < static_cast<int64_t>(TxnState::kPreparing) ||
      value > static_cast<int64_t>(TxnState::kAborted)) {
    return std::nullopt;
  }
  return static_cast<TxnState>(value);
}

std::string_view TxnEventName(TxnEvent event) {
  switch (event) {
    case TxnEvent::kVoteYes:
      return "vote_yes";
    case TxnEvent::kVoteNo:
      return "vote_no";
    case TxnEvent::kTimeout:
      return "timeout";
    case TxnEvent::kDisconnect:
      return "disconnect";
    case TxnEvent::kHelloPresumedAbort:
      return "hello_presumed_abort";
    case TxnEvent::kDecideCommit:
      return "decide_commit";
    case TxnEvent::kPinRefused:
      return "pin_refused";
    case TxnEvent::kDone:
      return "done";
    case TxnEvent::kForceCommit:
      return "force_commit";
    case TxnEvent::kForceAbort:
      return "force_abort";
  }
  return "unknown";
}

absl::StatusOr<TxnState> Transition(TxnState from, TxnEvent event) {
  // The whole table. Anything not listed is illegal; in particular nothing
  // leaves kCommitted but kDone (after the commit point the outcome can only
  // be commit), and nothing leaves kDone or kAborted.
  switch (from) {
    case TxnState::kPreparing:
      switch (event) {
        case TxnEvent::kVoteYes:
          return TxnState::kVotedYes;
        case TxnEvent::kVoteNo:
        case TxnEvent::kTimeout:
        case TxnEvent::kDisconnect:
        case TxnEvent::kHelloPresumedAbort:
        case TxnEvent::kForceAbort:
          return TxnState::kAborted;
        default:
          break;
      }
      break;
    case TxnState::kVotedYes:
      switch (event) {
        case TxnEvent::kDecideCommit:
        case TxnEvent::kForceCommit:
          return TxnState::kCommitted;
        case TxnEvent::kPinRefused:
        case TxnEvent::kTimeout:
        case TxnEvent::kDisconnect:
        case TxnEvent::kHelloPresumedAbort:
        case TxnEvent::kForceAbort:
          return TxnState::kAborted;
        default:
          break;
      }
      break;
    case TxnState::kCommitted:
      if (event == TxnEvent::kDone) return TxnState::kDone;
      break;
    case TxnState::kDone:
    case TxnState::kAborted:
      break;
  }
  std::string hint;
  if (from == TxnState::kCommitted) {
    hint = " (after the commit point the outcome can only be commit)";
  } else if (from == TxnState::kDone || from == TxnState::kAborted) {
    hint = " (a terminal state)";
  }
  return absl::FailedPreconditionError(
      absl::StrCat("txn state: event ", std::string(TxnEventName(event)), " is not legal in state ",
                   std::string(TxnStateName(from)), hint));
}

}  // namespace once::coordinator
