// The resource a participant commits into: the consumer's own store plus
// the participant's durable journal (DESIGN.md §2, "participant"). The SDK
// drives it through the phases of two-phase commit:
//
//   Recover()  at every (re)connect: the transactions in doubt (prepared,
//              no outcome yet), listed in "hello"
//   Prepare()  durably journal a transaction's staged effects  -> vote YES
//   Commit()   ONE local transaction: apply the staged effects of the
//              messages not committed yet (checked again here: model rule
//              3), record their ids, mark the transaction committed -> DONE
//   Abort()    discard the journal entry (presumed abort: nothing applied)
//
// and, for the streaming modes, ApplyOnce() (idempotent: effects + message
// id in one local transaction) and Apply() (at-least-once).
//
// Crash contract: after a crash at any instant, each transaction is
// prepared (with all its staged effects), committed (all effects applied,
// all ids recorded) or absent, never in between; an id is recorded iff its
// effects were applied.
//
// Group commit: the SDK may bracket the calls it makes for one burst of
// frames with BeginGroup() ... EndGroup(), so that the burst's prepares and
// commits share ONE local transaction and one flush to disk. Inside a
// group, Prepare/Commit/Abort are NOT durable on return; each call is
// still atomic on its own (an error undoes that call's part only), and the
// calls and reads that follow see its effects. EndGroup makes the whole
// group durable at once, or fails and keeps nothing of it. The SDK sends
// no vote and no DONE for a call of the group before EndGroup returned OK,
// so the crash contract above holds at every instant: a crash inside a
// group leaves each of its transactions as it was before the group (no
// frame about it was sent). A resource without grouping keeps the default
// no-ops: each call is then durable on return, as without groups.
//
// Thread-safety: the SDK calls a resource from its one session thread;
// implementations may be called from other threads too only where they say
// so (SqliteResource: every method is thread-safe).
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_RESOURCE_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_RESOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "once/staging.h"

namespace once {

// One message of a transaction as prepared.
struct StagedMessage {
  std::string message_id;
  // True when the id was already committed when the PREPARE came: nothing
  // is staged for it (the vote is still YES: DESIGN.md §2 "second guard").
  bool skipped = false;
  std::vector<Effect> effects;
};

struct PreparedTxn {
  std::string txn;
  std::string topic;
  std::string group;
  uint64_t epoch = 0;
  uint64_t generation = 0;
  std::vector<StagedMessage> messages;
};

enum class TxnStatus { kAbsent = 0, kPrepared = 1, kCommitted = 2 };

struct CommitResult {
  bool already_committed = false;  // a duplicate commit: nothing applied now
  int applied = 0;                 // messages whose effects were applied now
  int skipped = 0;                 // messages skipped: id already committed
};

class Resource {
 public:
  virtual ~Resource() = default;

  // The ids of the transactions prepared and not yet committed or aborted,
  // oldest first.
  virtual absl::StatusOr<std::vector<std::string>> Recover() = 0;

  virtual absl::StatusOr<TxnStatus> Status(const std::string& txn) = 0;

  // True when the message id's effects were applied (by any transaction or
  // streamed delivery).
  virtual absl::StatusOr<bool> IsCommitted(const std::string& message_id) = 0;

  // Durable on OK (inside a group: with the group's EndGroup). An error
  // means "vote NO" (nothing was journaled):
  // kInvalidArgument when the effects cannot apply (the SqliteResource
  // tries them against the current state and rolls them back),
  // kAlreadyExists when the transaction is already journaled.
  virtual absl::Status Prepare(const PreparedTxn& txn) = 0;

  // Applies a prepared transaction, or reports a duplicate (already
  // committed). kNotFound for a transaction never prepared (or aborted).
  virtual absl::StatusOr<CommitResult> Commit(const std::string& txn) = 0;

  // Discards a prepared transaction; OK when it is absent. A committed
  // transaction cannot be aborted: kFailedPrecondition, nothing changes.
  virtual absl::Status Abort(const std::string& txn) = 0;

  // Idempotent mode: applies `effects` and records `message_id`, in one
  // local transaction. false: the id was already recorded, nothing applied.
  virtual absl::StatusOr<bool> ApplyOnce(const std::string& message_id,
                                         const std::vector<Effect>& effects) = 0;

  // At-least-once mode: applies `effects` in one local transaction.
  virtual absl::Status Apply(const std::vector<Effect>& effects) = 0;

  // Opens a group (see "Group commit" above): the calls that follow, on
  // the same thread, up to EndGroup/AbortGroup, share one local
  // transaction and are not durable on return. kFailedPrecondition when
  // this thread has a group open already. Default: nothing (every call
  // stays durable on its own).
  virtual absl::Status BeginGroup() { return absl::OkStatus(); }

  // Makes everything done since BeginGroup durable at once (on the thread
  // that called BeginGroup). On an error nothing of the group is kept (the
  // resource rolls it all back) and the group is over either way.
  // kFailedPrecondition when this thread has no group open.
  virtual absl::Status EndGroup() { return absl::OkStatus(); }

  // Ends the group keeping nothing of it: the SDK calls it when a session
  // fails (or ends) with a group open, whose frames it will never send.
  // Default: EndGroup(), its result ignored; keeping the group would be
  // safe too, since nothing of it was acknowledged (a durable prepare
  // without a vote is presumed aborted by the coordinator, a durable
  // commit without DONE is answered DONE when COMMIT comes again).
  virtual void AbortGroup() { (void)EndGroup(); }
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_RESOURCE_H_
