// The ready-made Resource for a consumer whose store is a SQLite database:
// the participant's journal (schema/participant.sql, tables "once_*") lives
// in the same file as the consumer's tables, so that committing a
// transaction — applying its staged SQL statements, recording its message
// ids, marking it committed — is ONE local SQLite transaction, durable on
// return (WAL, synchronous=FULL by default).
//
// A handler stages SQL statements with bound parameters:
//
//   staging.Add("INSERT INTO accounts (account, balance) VALUES (?1, ?2) "
//               "ON CONFLICT (account) DO UPDATE SET balance = balance + ?2",
//               {std::string(account), int64_t{amount}});
//
// Prepare() runs the staged statements inside a savepoint against the
// current state and rolls them back, so a statement that cannot apply
// (syntax, constraint) makes the participant vote NO instead of failing
// after the commit decision. Statements must be deterministic given the
// database's state (no random(), no wall clock): they run again at commit.
//
// Thread-safety: every method is thread-safe (one mutex around the one
// connection). The consumer reads its tables through WithDatabase(), or
// through a connection of its own (WAL readers never block the writer).
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "once/resource.h"
#include "schema/clock.h"
#include "schema/sqlite.h"

namespace once {

struct SqliteResourceOptions {
  // FULL: a prepared or committed transaction survives power loss; the
  // coordinator relies on it (a YES vote is a promise).
  sqlite::Synchronous synchronous = sqlite::Synchronous::kFull;
  // Committed transactions are remembered (without their effects) so that
  // a re-sent COMMIT is answered DONE again; the oldest beyond both limits
  // are pruned at commit time. Message ids are never pruned (they are the
  // idempotence guard).
  int64_t keep_committed_ms = 7LL * 24 * 3600 * 1000;
  int64_t keep_committed_min = 10'000;
  Clock* clock = SystemClock();
  // Test hook called at the crash points "prepare:journaled" (after the
  // journal write is durable) and "commit:applying" (inside the local
  // transaction, after the first message's effects, before COMMIT). Crash
  // tests SIGKILL the process there.
  std::function<void(absl::string_view point)> crash_hook;
};

class SqliteResource final : public Resource {
 public:
  // Opens (or creates) the database at `path` and migrates the journal
  // tables. The consumer creates its own tables with WithDatabase().
  static absl::StatusOr<std::unique_ptr<SqliteResource>> Open(const std::string& path,
                                                              SqliteResourceOptions options = {});
  ~SqliteResource() override;

  const std::string& path() const { return path_; }

  // Runs `fn` with the connection, under the resource's lock: for the
  // consumer's DDL and reads. `fn` must not keep the pointer.
  absl::Status WithDatabase(const std::function<absl::Status(sqlite::Database*)>& fn);

  absl::StatusOr<std::vector<std::string>> Recover() override;
  absl::StatusOr<TxnStatus> Status(const std::string& txn) override;
  absl::StatusOr<bool> IsCommitted(const std::string& message_id) override;
  absl::Status Prepare(const PreparedTxn& txn) override;
  absl::StatusOr<CommitResult> Commit(const std::string& txn) override;
  absl::Status Abort(const std::string& txn) override;
  absl::StatusOr<bool> ApplyOnce(const std::string& message_id,
                                 const std::vector<Effect>& effects) override;
  absl::Status Apply(const std::vector<Effect>& effects) override;

 private:
  SqliteResource(std::string path, SqliteResourceOptions options,
                 std::unique_ptr<sqlite::Database> db);
  void Hook(absl::string_view point) const;

  const std::string path_;
  const SqliteResourceOptions options_;
  absl::Mutex mu_;
  std::unique_ptr<sqlite::Database> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_
