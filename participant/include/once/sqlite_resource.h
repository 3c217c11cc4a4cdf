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
// Group commit (Resource::BeginGroup): BeginGroup opens one IMMEDIATE
// transaction; each Prepare/Commit/Abort/ApplyOnce/Apply of the group runs
// in a SAVEPOINT inside it (a call that fails undoes its own part only);
// EndGroup COMMITs it: one fsync of the WAL for the whole group under
// synchronous=FULL, where each call alone costs one. A failed COMMIT rolls
// the whole group back. The destructor rolls back a group still open.
//
// Thread-safety: every method is thread-safe (one mutex around the one
// connection, taken per call). A group belongs to the thread that opened
// it: while it is open, calls from any other thread (the consumer reading
// through WithDatabase, another thread's BeginGroup) wait until it ends, so
// they never land inside it; the group's own thread calls everything, the
// handler's WithDatabase included, inside the group. EndGroup and
// AbortGroup must come from that thread. The consumer reads its tables
// through WithDatabase(), or through a connection of its own (WAL readers
// never block the writer, and see the state before an open group).
#ifndef ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_
#define ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
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
  // are pruned at commit time, at most once a second. Message ids are
  // never pruned (they are the idempotence guard).
  int64_t keep_committed_ms = 7LL * 24 * 3600 * 1000;
  int64_t keep_committed_min = 10'000;
  Clock* clock = SystemClock();
  // Test hook called at the crash points "prepare:journaled" (after the
  // journal write is durable; outside a group), "prepare:grouped" (the
  // journal row written inside a group, not durable: a crash leaves the
  // txn absent), "commit:applying" (inside the local transaction, or the
  // group's, after the first message's effects, before COMMIT),
  // "group:committing" (EndGroup, just before its COMMIT: a crash loses the
  // whole group) and "group:committed" (EndGroup's COMMIT returned: the
  // group is durable).
  // Crash tests SIGKILL the process there.
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
  // consumer's DDL and reads. `fn` must not keep the pointer. On the thread
  // of an open group it runs inside the group's transaction (what it writes
  // is kept or rolled back with the group; it must not BEGIN or COMMIT).
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

  // See "Group commit" above. BeginGroup waits while another thread's
  // group is open; kFailedPrecondition when this thread has one open.
  absl::Status BeginGroup() override;
  // kFailedPrecondition when this thread has no group open; on a failed
  // COMMIT the error names the file, and the group is rolled back.
  absl::Status EndGroup() override;
  // Rolls the group back; nothing when this thread has no group open.
  void AbortGroup() override;

 private:
  // Who may take the connection now: the waiting thread passes when no
  // group is open or the open group is its own. The condition is
  // evaluated under mu_ (possibly by another thread, hence `caller`).
  struct Gate {
    const SqliteResource* resource;
    std::thread::id caller;
    static bool Passes(Gate* gate) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  };
  Gate GateForThisThread() const { return Gate{this, std::this_thread::get_id()}; }

  SqliteResource(std::string path, SqliteResourceOptions options,
                 std::unique_ptr<sqlite::Database> db);
  void Hook(absl::string_view point) const;
  // True while a group is open; under mu_ and past the gate, it is the
  // caller's own.
  bool in_group() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return group_owner_.has_value(); }

  const std::string path_;
  const SqliteResourceOptions options_;
  absl::Mutex mu_;
  std::unique_ptr<sqlite::Database> db_ ABSL_GUARDED_BY(mu_);
  // The open group: its transaction and the thread that owns it.
  std::optional<sqlite::Transaction> group_ ABSL_GUARDED_BY(mu_);
  std::optional<std::thread::id> group_owner_ ABSL_GUARDED_BY(mu_);
  // Commits prune old committed transactions at most this often.
  static constexpr int64_t kPruneIntervalMs = 1000;
  int64_t last_prune_ms_ ABSL_GUARDED_BY(mu_) = -1;  // -1: not since open
};

}  // namespace once

#endif  // ONCE_PARTICIPANT_INCLUDE_ONCE_SQLITE_RESOURCE_H_
