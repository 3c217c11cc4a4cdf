#include "once/sqlite_resource.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "participant/src/journal.h"
#include "participant/src/local_txn.h"
#include "schema/status_macros.h"

namespace once {

using participant::IsIdCommitted;
using participant::LocalTxn;
using participant::RunEffects;

absl::StatusOr<std::unique_ptr<SqliteResource>> SqliteResource::Open(
    const std::string& path, SqliteResourceOptions options) {
  sqlite::DatabaseOptions db_options;
  db_options.synchronous = options.synchronous;
  ONCE_ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Database> db,
                        sqlite::Database::Open(path, db_options));
  ONCE_RETURN_IF_ERROR(participant::MigrateJournal(db.get()));
  return std::unique_ptr<SqliteResource>(
      new SqliteResource(path, std::move(options), std::move(db)));
}

SqliteResource::SqliteResource(std::string path, SqliteResourceOptions options,
                               std::unique_ptr<sqlite::Database> db)
    : path_(std::move(path)), options_(std::move(options)), db_(std::move(db)) {}

SqliteResource::~SqliteResource() {
  absl::MutexLock lock(&mu_);
  // A group still open: nothing of it was acknowledged (its frames are sent
  // only after EndGroup), so it is rolled back (the Transaction's RAII).
  group_.reset();
  group_owner_.reset();
}

// Evaluated by absl::Mutex with mu_ held (Condition's contract), which the
// analysis cannot see through the function pointer.
bool SqliteResource::Gate::Passes(Gate* gate) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return !gate->resource->group_owner_.has_value() || *gate->resource->group_owner_ == gate->caller;
}

absl::Status SqliteResource::BeginGroup() {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  if (in_group()) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal ", path_, ": BeginGroup: this thread has a group open already"));
  }
  ONCE_ASSIGN_OR_RETURN(sqlite::Transaction t, sqlite::Transaction::Begin(db_.get()));
  group_.emplace(std::move(t));
  group_owner_ = gate.caller;
  return absl::OkStatus();
}

absl::Status SqliteResource::EndGroup() {
  // No gate: a thread without a group gets its error at once rather than
  // waiting for another thread's group to end.
  absl::MutexLock lock(&mu_);
  if (group_owner_ != std::this_thread::get_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal ", path_, ": EndGroup: this thread has no group open"));
  }
  std::optional<sqlite::Transaction> group = std::exchange(group_, std::nullopt);
  group_owner_.reset();
  if (!participant::InTransaction(db_.get())) {
    // SQLite rolled the transaction back after an error inside the group
    // (the call that met it failed): nothing of the group is kept.
    return absl::AbortedError(
        absl::StrCat("journal ", path_, ": group rolled back by SQLite after an error inside it"));
  }
  Hook("group:committing");
  absl::Status committed = group->Commit();
  if (!committed.ok()) {
    // `group` rolls back when it goes out of scope.
    return absl::Status(committed.code(), absl::StrCat("journal ", path_,
                                                       ": group commit failed, the group is "
                                                       "rolled back: ",
                                                       committed.message()));
  }
  Hook("group:committed");
  return absl::OkStatus();
}

void SqliteResource::AbortGroup() {
  absl::MutexLock lock(&mu_);
  if (group_owner_ != std::this_thread::get_id()) return;
  group_.reset();  // ROLLBACK (Transaction's RAII)
  group_owner_.reset();
}

void SqliteResource::Hook(absl::string_view point) const {
  if (options_.crash_hook) options_.crash_hook(point);
}

absl::Status SqliteResource::WithDatabase(
    const std::function<absl::Status(sqlite::Database*)>& fn) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  return fn(db_.get());
}

absl::StatusOr<std::vector<std::string>> SqliteResource::Recover() {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  return participant::ListPrepared(db_.get());
}

absl::StatusOr<TxnStatus> SqliteResource::Status(const std::string& txn) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  return participant::ReadTxnStatus(db_.get(), txn);
}

absl::StatusOr<bool> SqliteResource::IsCommitted(const std::string& message_id) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  return IsIdCommitted(db_.get(), message_id);
}

absl::Status SqliteResource::Prepare(const PreparedTxn& txn) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  sqlite::Database* db = db_.get();
  ONCE_ASSIGN_OR_RETURN(LocalTxn t, LocalTxn::Begin(db, in_group()));
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, participant::ReadTxnStatus(db, txn.txn));
  if (status != TxnStatus::kAbsent) {
    return absl::AlreadyExistsError(
        absl::StrCat("journal ", path_, ": txn ", txn.txn, " is already journaled"));
  }
  // Try the effects against the current state, in order, and roll them
  // back: a statement that cannot apply must turn into a NO vote now, not
  // into a commit that fails after the decision.
  ONCE_RETURN_IF_ERROR(db->ExecCached("SAVEPOINT once_trial"));
  absl::Status trial;
  for (const StagedMessage& m : txn.messages) {
    if (m.skipped) continue;
    trial = RunEffects(db, m.effects);
    if (!trial.ok()) {
      trial =
          absl::InvalidArgumentError(absl::StrCat("message ", m.message_id, ": ", trial.message()));
      break;
    }
  }
  ONCE_RETURN_IF_ERROR(db->ExecCached("ROLLBACK TO once_trial"));
  ONCE_RETURN_IF_ERROR(db->ExecCached("RELEASE once_trial"));
  ONCE_RETURN_IF_ERROR(trial);
  ONCE_RETURN_IF_ERROR(participant::InsertPrepared(db, txn, options_.clock->NowMs()));
  ONCE_RETURN_IF_ERROR(t.Commit());
  Hook(in_group() ? "prepare:grouped" : "prepare:journaled");
  return absl::OkStatus();
}

absl::StatusOr<CommitResult> SqliteResource::Commit(const std::string& txn) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  sqlite::Database* db = db_.get();
  ONCE_ASSIGN_OR_RETURN(LocalTxn t, LocalTxn::Begin(db, in_group()));
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, participant::ReadTxnStatus(db, txn));
  CommitResult result;
  if (status == TxnStatus::kAbsent) {
    return absl::NotFoundError(
        absl::StrCat("journal ", path_, ": commit of txn ", txn, ", which was never prepared"));
  }
  if (status == TxnStatus::kCommitted) {
    result.already_committed = true;
    return result;
  }
  ONCE_ASSIGN_OR_RETURN(const std::vector<StagedMessage> staged, participant::LoadStaged(db, txn));
  const int64_t now = options_.clock->NowMs();
  for (const StagedMessage& m : staged) {
    // The guard again, at apply time (model rule 3): another transaction
    // may have committed this id since the vote (a redelivery after a
    // lease timed out), or the id repeats inside this transaction.
    bool claimed = false;
    if (!m.skipped) {
      ONCE_ASSIGN_OR_RETURN(claimed, participant::ClaimMessageId(db, m.message_id, txn, now));
    }
    if (!claimed) {
      ++result.skipped;
      continue;
    }
    ONCE_RETURN_IF_ERROR(RunEffects(db, m.effects));
    if (result.applied++ == 0) Hook("commit:applying");
  }
  ONCE_RETURN_IF_ERROR(participant::MarkCommitted(db, txn, now));
  if (last_prune_ms_ < 0 || now - last_prune_ms_ >= kPruneIntervalMs) {
    // At most once a second: a prune walks keep_committed_min index rows,
    // too much for every commit of a small transaction.
    ONCE_RETURN_IF_ERROR(participant::PruneCommitted(
        db, now - options_.keep_committed_ms, std::max<int64_t>(1, options_.keep_committed_min)));
    last_prune_ms_ = now;
  }
  ONCE_RETURN_IF_ERROR(t.Commit());
  return result;
}

absl::Status SqliteResource::Abort(const std::string& txn) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  sqlite::Database* db = db_.get();
  ONCE_ASSIGN_OR_RETURN(LocalTxn t, LocalTxn::Begin(db, in_group()));
  ONCE_ASSIGN_OR_RETURN(const TxnStatus status, participant::ReadTxnStatus(db, txn));
  if (status == TxnStatus::kAbsent) return absl::OkStatus();
  if (status == TxnStatus::kCommitted) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal ", path_, ": abort of txn ", txn, ", which is committed"));
  }
  ONCE_RETURN_IF_ERROR(participant::DeleteTxn(db, txn));
  return t.Commit();
}

absl::StatusOr<bool> SqliteResource::ApplyOnce(const std::string& message_id,
                                               const std::vector<Effect>& effects) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  sqlite::Database* db = db_.get();
  ONCE_ASSIGN_OR_RETURN(LocalTxn t, LocalTxn::Begin(db, in_group()));
  ONCE_ASSIGN_OR_RETURN(const bool claimed, participant::ClaimMessageId(db, message_id, /*txn=*/"",
                                                                        options_.clock->NowMs()));
  if (!claimed) return false;  // the transaction rolls back: nothing changed
  ONCE_RETURN_IF_ERROR(RunEffects(db, effects));
  ONCE_RETURN_IF_ERROR(t.Commit());
  return true;
}

absl::Status SqliteResource::Apply(const std::vector<Effect>& effects) {
  Gate gate = GateForThisThread();
  absl::MutexLock lock(&mu_, absl::Condition(&Gate::Passes, &gate));
  sqlite::Database* db = db_.get();
  ONCE_ASSIGN_OR_RETURN(LocalTxn t, LocalTxn::Begin(db, in_group()));
  ONCE_RETURN_IF_ERROR(RunEffects(db, effects));
  return t.Commit();
}

}  // namespace once
