// A small RAII wrapper over the SQLite C API in the shape of SQLiteCpp, but
// returning absl::Status instead of throwing: a Database owns a sqlite3*, a
// Statement owns a sqlite3_stmt*, a Transaction rolls back unless committed,
// and Migrate() applies numbered SQL scripts tracked by PRAGMA user_version.
//
// Shared by every SQLite store of the project (consumer groups, the 2PC
// coordinator, the participant's journal).
//
// Error codes: SQLITE_BUSY/LOCKED -> kUnavailable (retry), SQLITE_CONSTRAINT
// -> kFailedPrecondition (or kAlreadyExists for UNIQUE/PRIMARY KEY),
// SQLITE_CORRUPT/NOTADB -> kDataLoss, SQLITE_FULL -> kResourceExhausted,
// SQLITE_CANTOPEN/PERM/READONLY -> kFailedPrecondition, SQLITE_IOERR ->
// kUnavailable, SQLITE_RANGE/MISUSE -> kInvalidArgument, others -> kInternal.
// Every message names the database file, and the SQL when there is one.
#ifndef ONCE_SCHEMA_SQLITE_H_
#define ONCE_SCHEMA_SQLITE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

struct sqlite3;
struct sqlite3_stmt;

namespace once::sqlite {

// PRAGMA synchronous. With WAL, kFull syncs the WAL at every commit (the
// default: a commit that returned survives power loss); kNormal syncs only
// at checkpoints (a commit may be lost on power loss, never corrupted).
enum class Synchronous { kOff = 0, kNormal = 1, kFull = 2, kExtra = 3 };

struct DatabaseOptions {
  bool read_only = false;
  bool create_if_missing = true;  // ignored with read_only
  // PRAGMA journal_mode=WAL. Off: SQLite's default rollback journal.
  bool wal = true;
  Synchronous synchronous = Synchronous::kFull;
  // How long a statement waits on a lock held by another connection before
  // failing with kUnavailable.
  int busy_timeout_ms = 5000;
  bool foreign_keys = true;
  // PRAGMA temp_store=MEMORY: statement journals (a savepoint's undo
  // pages), sorts and temporary tables stay in memory. SQLite's default
  // spills any beyond 64 KiB to a file in /var/tmp (or $SQLITE_TMPDIR),
  // outside the data directory: an unwritable or full temp directory
  // would fail a transaction that its own directory could hold, and the
  // participant's trial of a 1,000-message PREPARE spills every time.
  bool temp_in_memory = true;
};

class Database;

namespace internal {

// One SQL text of a Database's statement cache (Database::PrepareCached).
// Heap-allocated and never moved while in the cache, so that a Statement
// taken from the cache points to it instead of copying its SQL, and goes
// back to it without looking the SQL up again.
struct CachedSql {
  explicit CachedSql(absl::string_view text) : sql(text) {}
  const std::string sql;
  std::vector<sqlite3_stmt*> idle;  // reset, bindings cleared
  size_t in_use = 0;                // Statements out of the cache with this SQL
};

}  // namespace internal

// A prepared statement. Owned by the caller; must not outlive its Database.
// Movable, not copyable. Not thread-safe: one thread at a time.
//
// Parameter indexes are 1-based (as in SQLite), column indexes 0-based.
class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  bool valid() const { return stmt_ != nullptr; }
  const std::string& sql() const { return cached_ != nullptr ? cached_->sql : sql_; }

  // Bind errors (index out of range, statement busy) are kInvalidArgument.
  absl::Status BindInt64(int index, int64_t value);
  absl::Status BindDouble(int index, double value);
  // The bytes are copied (SQLITE_TRANSIENT): `value` may die after the call.
  absl::Status BindText(int index, absl::string_view value);
  absl::Status BindBlob(int index, absl::string_view value);
  absl::Status BindNull(int index);
  // `name` includes its prefix: ":topic", "@x", "$y". kInvalidArgument when
  // the statement has no such parameter.
  absl::StatusOr<int> ParameterIndex(absl::string_view name) const;

  // Runs one step: true when a row is ready to read with the Column
  // accessors, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows; for INSERT/UPDATE/DELETE/DDL.
  absl::Status Run();
  // Makes the statement ready to run again; bindings are kept.
  absl::Status Reset();
  absl::Status ClearBindings();

  // Column accessors read the current row; valid only after Step() returned
  // true. Text and blob views are valid until the next Step/Reset.
  int ColumnCount() const;
  std::string ColumnName(int column) const;
  bool ColumnIsNull(int column) const;
  int64_t ColumnInt64(int column) const;
  double ColumnDouble(int column) const;
  absl::string_view ColumnText(int column) const;
  absl::string_view ColumnBlob(int column) const;

  sqlite3_stmt* handle() const { return stmt_; }

 private:
  friend class Database;
  // From Prepare: finalized when released.
  Statement(Database* db, sqlite3_stmt* stmt, std::string sql)
      : db_(db), stmt_(stmt), sql_(std::move(sql)) {}
  // From PrepareCached: goes back to `cached` when released.
  Statement(Database* db, sqlite3_stmt* stmt, internal::CachedSql* cached)
      : db_(db), stmt_(stmt), cached_(cached) {}
  absl::Status BindResult(int rc, int index, const char* what);
  // Finalizes the statement, or gives it back to its Database's cache.
  void Release();

  Database* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  // From PrepareCached: the cache entry it goes back to, which holds its
  // SQL (owned by db_, which outlives this Statement).
  internal::CachedSql* cached_ = nullptr;
  std::string sql_;  // the SQL when not cached_
};

// One connection. Not thread-safe: callers serialize their use of one
// Database (SQLite's own mutexes then have nothing to contend on).
class Database {
 public:
  // Opens (or creates) `path` and applies the options' pragmas. ":memory:"
  // opens a private in-memory database (WAL is then skipped).
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const DatabaseOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  const std::string& path() const { return path_; }

  // Runs one or more ';'-separated statements that return no rows needed.
  absl::Status Exec(absl::string_view sql);

  // Compiles exactly one statement (trailing whitespace or ';' allowed).
  absl::StatusOr<Statement> Prepare(absl::string_view sql);

  // Prepare, through a cache of compiled statements: the Statement comes
  // from the cache when one with the same SQL is idle there, and goes back
  // to it (reset, bindings cleared) when destroyed. For statements run
  // again and again (a journal's, a consumer's effects): compiling costs
  // more than running a small one. At most kMaxIdleStatements are kept
  // idle; a statement given back beyond that is finalized.
  absl::StatusOr<Statement> PrepareCached(absl::string_view sql);
  static constexpr size_t kMaxIdleStatements = 64;

  // Runs one statement that takes no parameters and returns no rows (BEGIN,
  // COMMIT, SAVEPOINT, RELEASE, ...) through the statement cache: a group
  // commit runs several of these, and compiling one costs tens of
  // thousands of instructions, more than running it.
  absl::Status ExecCached(absl::string_view sql);
  size_t idle_statements() const { return idle_count_; }

  // Runs a one-row, one-column query and returns its integer: for PRAGMAs
  // and COUNT(*). kNotFound when it returns no row.
  absl::StatusOr<int64_t> QueryInt64(absl::string_view sql);

  int64_t LastInsertRowId() const;
  // Rows changed by the most recent INSERT/UPDATE/DELETE.
  int64_t Changes() const;

  // PRAGMA user_version: the schema version that Migrate() maintains.
  absl::StatusOr<int64_t> UserVersion();

  sqlite3* handle() const { return db_; }

  // The Status for SQLite result code `rc` on this connection, its message
  // naming the file, `what` was being done and SQLite's own message.
  absl::Status Error(int rc, absl::string_view what) const;

 private:
  friend class Statement;
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  // Compiles exactly one statement; the caller owns the result.
  absl::StatusOr<sqlite3_stmt*> Compile(absl::string_view sql);
  // Takes back a statement from PrepareCached (see Statement::Release).
  void Recycle(sqlite3_stmt* stmt, internal::CachedSql* cached);

  sqlite3* db_ = nullptr;
  std::string path_;
  // The statement cache, by SQL text (each key views its entry's sql). An
  // entry lives while it has a statement, idle or in use: the cache holds
  // no more SQL texts than kMaxIdleStatements plus the statements in use.
  absl::flat_hash_map<absl::string_view, std::unique_ptr<internal::CachedSql>> cache_;
  size_t idle_count_ = 0;  // sum of the entries' idle.size()
};

enum class TransactionMode { kDeferred, kImmediate, kExclusive };

// A transaction guard: BEGIN on Begin(), ROLLBACK in the destructor unless
// Commit() succeeded. Movable. Must not outlive its Database.
class Transaction {
 public:
  // kImmediate takes the write lock at BEGIN, so a writer never discovers a
  // conflict half-way (SQLITE_BUSY comes at BEGIN, honouring busy_timeout).
  static absl::StatusOr<Transaction> Begin(Database* db,
                                           TransactionMode mode = TransactionMode::kImmediate);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&& other) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  // COMMIT. Durable on return under the database's synchronous setting.
  // After a failed Commit the destructor still rolls back.
  absl::Status Commit();
  // Explicit ROLLBACK; the destructor then does nothing.
  absl::Status Rollback();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_ = nullptr;  // nullptr once finished
};

// One step of a schema: applying `sql` moves the database from version
// `version - 1` to `version`.
struct Migration {
  int version = 0;
  std::string sql;
};

// Splits a script into numbered migrations. Each starts at a line of the
// form "-- migration: N" (N = 1, 2, 3, ... in order, no gaps); text before
// the first marker (a header comment) is ignored. kInvalidArgument naming
// `script_name` and the line for a bad or out-of-order marker, or no marker.
absl::StatusOr<std::vector<Migration>> ParseMigrations(absl::string_view script,
                                                       absl::string_view script_name);

// Brings `db` up to the last of `migrations` (consecutive versions from 1):
// each migration runs in its own IMMEDIATE transaction together with the
// PRAGMA user_version bump, so a crash leaves the database at a whole
// version. kFailedPrecondition when the database is at a version newer than
// the last migration (written by a newer program). Returns the version the
// database is at afterwards.
absl::StatusOr<int> Migrate(Database* db, absl::Span<const Migration> migrations);

}  // namespace once::sqlite

#endif  // ONCE_SCHEMA_SQLITE_H_
