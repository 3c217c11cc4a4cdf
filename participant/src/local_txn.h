// One SqliteResource call's atomic unit of work. Outside a group it is the
// call's own IMMEDIATE transaction (durable at Commit under the database's
// synchronous setting); inside a group (SqliteResource::BeginGroup) it is
// a SAVEPOINT within the group's transaction, so that a call that fails
// undoes its own part only and the group's COMMIT makes it durable later.
//
// RAII: a unit not committed is rolled back when destroyed (savepoint:
// ROLLBACK TO + RELEASE, which keeps the group's transaction open).
//
// Not thread-safe: used under the resource's lock, within one call.
#ifndef ONCE_PARTICIPANT_SRC_LOCAL_TXN_H_
#define ONCE_PARTICIPANT_SRC_LOCAL_TXN_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "schema/sqlite.h"

namespace once::participant {

class LocalTxn {
 public:
  // `in_group`: a group's transaction is open on `db`. kAborted when it is
  // not open any more (SQLite rolls a transaction back by itself after
  // some errors, e.g. SQLITE_FULL or an I/O error): the call must not run
  // outside the group, where it would become durable on its own.
  static absl::StatusOr<LocalTxn> Begin(sqlite::Database* db, bool in_group);

  LocalTxn(LocalTxn&& other) noexcept;
  LocalTxn& operator=(LocalTxn&& other) = delete;
  LocalTxn(const LocalTxn&) = delete;
  LocalTxn& operator=(const LocalTxn&) = delete;
  ~LocalTxn();

  // COMMIT (own transaction: durable on return) or RELEASE (savepoint: part
  // of the group, durable with it). After an error the destructor still
  // rolls back.
  absl::Status Commit();

 private:
  LocalTxn() = default;

  std::optional<sqlite::Transaction> txn_;    // outside a group
  sqlite::Database* savepoint_db_ = nullptr;  // inside a group, until released
};

// True when `db` is inside a transaction (not in autocommit mode).
bool InTransaction(sqlite::Database* db);

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_LOCAL_TXN_H_
