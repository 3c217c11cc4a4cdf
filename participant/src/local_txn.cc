#include "participant/src/local_txn.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "participant/src/journal.h"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

// The name is fixed: units never nest (one per call), and Prepare's own
// trial savepoint ("once_trial") nests inside it by another name.
constexpr char kSavepoint[] = "SAVEPOINT once_call";
constexpr char kRelease[] = "RELEASE once_call";
constexpr char kRollbackTo[] = "ROLLBACK TO once_call";

}  // namespace

bool InTransaction(sqlite::Database* db) { return sqlite3_get_autocommit(db->handle()) == 0; }

absl::StatusOr<LocalTxn> LocalTxn::Begin(sqlite::Database* db, bool in_group) {
  LocalTxn unit;
  if (!in_group) {
    ONCE_ASSIGN_OR_RETURN(sqlite::Transaction t, sqlite::Transaction::Begin(db));
    unit.txn_.emplace(std::move(t));
    return unit;
  }
  if (!InTransaction(db)) {
    return absl::AbortedError(absl::StrCat("journal ", db->path(),
                                           ": the group's transaction was rolled back by SQLite "
                                           "after an earlier error; nothing more runs in it"));
  }
  ONCE_RETURN_IF_ERROR(db->ExecCached(kSavepoint));
  unit.savepoint_db_ = db;
  return unit;
}

LocalTxn::LocalTxn(LocalTxn&& other) noexcept
    : txn_(std::move(other.txn_)), savepoint_db_(std::exchange(other.savepoint_db_, nullptr)) {
  other.txn_.reset();
}

LocalTxn::~LocalTxn() {
  if (savepoint_db_ == nullptr) return;  // released, moved from, or a transaction (its own RAII)
  // Undo this call's part and keep the group's transaction open. When
  // SQLite has already rolled the whole transaction back, both fail; the
  // next call (or the group's COMMIT) reports it.
  if (!InTransaction(savepoint_db_)) return;
  (void)savepoint_db_->ExecCached(kRollbackTo);
  (void)savepoint_db_->ExecCached(kRelease);
}

absl::Status LocalTxn::Commit() {
  if (txn_.has_value()) return txn_->Commit();
  if (savepoint_db_ == nullptr) return absl::FailedPreconditionError("local txn already finished");
  ONCE_RETURN_IF_ERROR(savepoint_db_->ExecCached(kRelease));
  savepoint_db_ = nullptr;
  return absl::OkStatus();
}

}  // namespace once::participant
