#include "schema/sqlite.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "schema/status_macros.h"

namespace once::sqlite {
namespace {

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::StatusCode::kAlreadyExists;
      }
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_RANGE:
    case SQLITE_MISUSE:
    case SQLITE_MISMATCH:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status MakeError(sqlite3* db, int rc, absl::string_view path, absl::string_view what) {
  // sqlite3_errmsg describes the most recent failure on the connection;
  // sqlite3_errstr only the code, which is all we have without a connection.
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeFor(rc),
                      absl::StrCat("sqlite ", path, ": ", what, ": ", detail, " (code ", rc, ")"));
}

const char* SynchronousName(Synchronous s) {
  switch (s) {
    case Synchronous::kOff:
      return "OFF";
    case Synchronous::kNormal:
      return "NORMAL";
    case Synchronous::kFull:
      return "FULL";
    case Synchronous::kExtra:
      return "EXTRA";
  }
  return "FULL";
}

}  // namespace

// ---------------------------------------------------------------- Statement

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      cached_(std::exchange(other.cached_, nullptr)),
      sql_(std::move(other.sql_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    Release();
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    cached_ = std::exchange(other.cached_, nullptr);
    sql_ = std::move(other.sql_);
  }
  return *this;
}

Statement::~Statement() { Release(); }

void Statement::Release() {
  if (stmt_ == nullptr) return;
  sqlite3_stmt* stmt = std::exchange(stmt_, nullptr);
  if (cached_ != nullptr) {
    db_->Recycle(stmt, std::exchange(cached_, nullptr));
  } else {
    sqlite3_finalize(stmt);
  }
}

absl::Status Statement::BindResult(int rc, int index, const char* what) {
  if (rc == SQLITE_OK) return absl::OkStatus();
  return db_->Error(rc,
                    absl::StrCat("binding ", what, " to parameter ", index, " of \"", sql(), "\""));
}

absl::Status Statement::BindInt64(int index, int64_t value) {
  return BindResult(sqlite3_bind_int64(stmt_, index, value), index, "an integer");
}

absl::Status Statement::BindDouble(int index, double value) {
  return BindResult(sqlite3_bind_double(stmt_, index, value), index, "a double");
}

absl::Status Statement::BindText(int index, absl::string_view value) {
  return BindResult(
      sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      index, "text");
}

absl::Status Statement::BindBlob(int index, absl::string_view value) {
  // A zero-length blob must still be a blob, not NULL: sqlite3_bind_blob
  // binds NULL for a nullptr data pointer.
  static const char kEmpty = 0;
  const char* data = value.empty() ? &kEmpty : value.data();
  return BindResult(sqlite3_bind_blob64(stmt_, index, data, value.size(), SQLITE_TRANSIENT), index,
                    "a blob");
}

absl::Status Statement::BindNull(int index) {
  return BindResult(sqlite3_bind_null(stmt_, index), index, "NULL");
}

absl::StatusOr<int> Statement::ParameterIndex(absl::string_view name) const {
  std::string n(name);
  int index = sqlite3_bind_parameter_index(stmt_, n.c_str());
  if (index == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite ", db_->path(), ": no parameter ", name, " in \"", sql(), "\""));
  }
  return index;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status error = db_->Error(rc, absl::StrCat("running \"", sql(), "\""));
  // Leave the statement reusable: a failed step otherwise sticks until reset.
  sqlite3_reset(stmt_);
  return error;
}

absl::Status Statement::Run() {
  while (true) {
    ONCE_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return absl::OkStatus();
  }
}

absl::Status Statement::Reset() {
  int rc = sqlite3_reset(stmt_);
  if (rc != SQLITE_OK) return db_->Error(rc, absl::StrCat("resetting \"", sql(), "\""));
  return absl::OkStatus();
}

absl::Status Statement::ClearBindings() {
  int rc = sqlite3_clear_bindings(stmt_);
  if (rc != SQLITE_OK) return db_->Error(rc, absl::StrCat("clearing bindings of \"", sql(), "\""));
  return absl::OkStatus();
}

int Statement::ColumnCount() const { return sqlite3_column_count(stmt_); }

std::string Statement::ColumnName(int column) const {
  const char* name = sqlite3_column_name(stmt_, column);
  return name == nullptr ? std::string() : std::string(name);
}

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

int64_t Statement::ColumnInt64(int column) const { return sqlite3_column_int64(stmt_, column); }

double Statement::ColumnDouble(int column) const { return sqlite3_column_double(stmt_, column); }

absl::string_view Statement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return absl::string_view();
  return absl::string_view(reinterpret_cast<const char*>(text),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

absl::string_view Statement::ColumnBlob(int column) const {
  const void* blob = sqlite3_column_blob(stmt_, column);
  if (blob == nullptr) return absl::string_view();
  return absl::string_view(static_cast<const char*>(blob),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

// ----------------------------------------------------------------- Database

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                         const DatabaseOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX;  // callers serialize; see the class comment
  if (options.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (options.create_if_missing) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status error = MakeError(raw, rc, path, "opening");
    sqlite3_close_v2(raw);  // a handle is returned even on failure
    return error;
  }
  std::unique_ptr<Database> db(new Database(raw, path));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);

  // A file that is not a database only shows itself at the first read.
  ONCE_RETURN_IF_ERROR(db->QueryInt64("PRAGMA schema_version").status());
  if (options.wal && path != ":memory:" && !path.empty()) {
    if (options.read_only) {
      // A read-only connection cannot switch modes; it reads either.
    } else {
      ONCE_ASSIGN_OR_RETURN(Statement mode, db->Prepare("PRAGMA journal_mode=WAL"));
      ONCE_ASSIGN_OR_RETURN(bool row, mode.Step());
      if (!row || absl::AsciiStrToLower(mode.ColumnText(0)) != "wal") {
        return absl::FailedPreconditionError(
            absl::StrCat("sqlite ", path, ": could not switch to WAL journal mode (got ",
                         row ? std::string(mode.ColumnText(0)) : "nothing", ")"));
      }
    }
  }
  ONCE_RETURN_IF_ERROR(
      db->Exec(absl::StrCat("PRAGMA synchronous=", SynchronousName(options.synchronous))));
  ONCE_RETURN_IF_ERROR(
      db->Exec(absl::StrCat("PRAGMA foreign_keys=", options.foreign_keys ? "ON" : "OFF")));
  if (options.temp_in_memory) ONCE_RETURN_IF_ERROR(db->Exec("PRAGMA temp_store=MEMORY"));
  return db;
}

Database::~Database() {
  // By contract no Statement is out of the cache any more: every entry's
  // statements are idle.
  for (auto& [sql, cached] : cache_) {
    for (sqlite3_stmt* stmt : cached->idle) sqlite3_finalize(stmt);
  }
  // close_v2 defers the close until the last statement is finalized, so a
  // leaked Statement cannot make this fail; by contract there is none.
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

absl::StatusOr<Statement> Database::PrepareCached(absl::string_view sql) {
  // The one lookup of `sql` for this use: the Statement keeps its entry,
  // and Recycle gives it back there.
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second->idle.empty()) {
    internal::CachedSql* cached = it->second.get();
    sqlite3_stmt* stmt = cached->idle.back();
    cached->idle.pop_back();
    --idle_count_;
    ++cached->in_use;
    return Statement(this, stmt, cached);
  }
  // A statement that does not compile leaves the cache as it was.
  absl::StatusOr<sqlite3_stmt*> stmt = Compile(sql);
  if (!stmt.ok()) return stmt.status();
  if (it == cache_.end()) {
    auto cached = std::make_unique<internal::CachedSql>(sql);
    absl::string_view key = cached->sql;
    it = cache_.emplace(key, std::move(cached)).first;
  }
  ++it->second->in_use;
  return Statement(this, *stmt, it->second.get());
}

absl::Status Database::ExecCached(absl::string_view sql) {
  ONCE_ASSIGN_OR_RETURN(Statement statement, PrepareCached(sql));
  return statement.Run();
}

void Database::Recycle(sqlite3_stmt* stmt, internal::CachedSql* cached) {
  --cached->in_use;
  if (idle_count_ < kMaxIdleStatements) {
    // A statement whose last step failed is still reusable: SQLite reports
    // that error once more, here at the reset, and it was already reported.
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    cached->idle.push_back(stmt);
    ++idle_count_;
    return;
  }
  sqlite3_finalize(stmt);
  // An entry with no statement, idle or in use, has no Statement pointing
  // to it: it goes, or a stream of distinct SQL texts would grow the cache
  // without bound. (erase finds the entry before it destroys the key's text.)
  if (cached->in_use == 0 && cached->idle.empty()) cache_.erase(cached->sql);
}

absl::Status Database::Error(int rc, absl::string_view what) const {
  return MakeError(db_, rc, path_, what);
}

absl::Status Database::Exec(absl::string_view sql) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string detail = message != nullptr ? message : sqlite3_errstr(rc);
  sqlite3_free(message);
  if (text.size() > 200) text = absl::StrCat(text.substr(0, 200), "...");
  return absl::Status(CodeFor(rc), absl::StrCat("sqlite ", path_, ": running \"", text,
                                                "\": ", detail, " (code ", rc, ")"));
}

absl::StatusOr<Statement> Database::Prepare(absl::string_view sql) {
  absl::StatusOr<sqlite3_stmt*> stmt = Compile(sql);
  if (!stmt.ok()) return stmt.status();
  return Statement(this, *stmt, std::string(sql));
}

absl::StatusOr<sqlite3_stmt*> Database::Compile(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) {
    return Error(rc, absl::StrCat("preparing \"", sql, "\""));
  }
  if (stmt == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite ", path_, ": \"", sql, "\" holds no statement"));
  }
  absl::string_view rest(tail, static_cast<size_t>(sql.data() + sql.size() - tail));
  rest = absl::StripAsciiWhitespace(rest);
  while (absl::ConsumePrefix(&rest, ";")) rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!rest.empty()) {
    sqlite3_finalize(stmt);
    return absl::InvalidArgumentError(absl::StrCat(
        "sqlite ", path_, ": \"", sql, "\" holds more than one statement; Prepare takes one"));
  }
  return stmt;
}

absl::StatusOr<int64_t> Database::QueryInt64(absl::string_view sql) {
  ONCE_ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
  ONCE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("sqlite ", path_, ": \"", sql, "\" returned no row"));
  }
  return stmt.ColumnInt64(0);
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

int64_t Database::Changes() const { return sqlite3_changes64(db_); }

absl::StatusOr<int64_t> Database::UserVersion() { return QueryInt64("PRAGMA user_version"); }

// -------------------------------------------------------------- Transaction

absl::StatusOr<Transaction> Transaction::Begin(Database* db, TransactionMode mode) {
  const char* sql = "BEGIN IMMEDIATE";
  if (mode == TransactionMode::kDeferred) sql = "BEGIN DEFERRED";
  if (mode == TransactionMode::kExclusive) sql = "BEGIN EXCLUSIVE";
  ONCE_RETURN_IF_ERROR(db->ExecCached(sql));
  return Transaction(db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr) (void)Rollback();
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)Rollback();
}

absl::Status Transaction::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("sqlite: transaction already finished");
  ONCE_RETURN_IF_ERROR(db_->ExecCached("COMMIT"));
  db_ = nullptr;
  return absl::OkStatus();
}

absl::Status Transaction::Rollback() {
  if (db_ == nullptr) return absl::FailedPreconditionError("sqlite: transaction already finished");
  Database* db = std::exchange(db_, nullptr);
  // After some errors (SQLITE_FULL, IOERR) SQLite has already rolled back;
  // ROLLBACK then fails with "no transaction is active", which is fine.
  if (sqlite3_get_autocommit(db->handle()) != 0) return absl::OkStatus();
  return db->Exec("ROLLBACK");
}

// --------------------------------------------------------------- Migrations

absl::StatusOr<std::vector<Migration>> ParseMigrations(absl::string_view script,
                                                       absl::string_view script_name) {
  std::vector<Migration> migrations;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(script, '\n')) {
    ++line_number;
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&trimmed, "-- migration:")) {
      trimmed = absl::StripAsciiWhitespace(trimmed);
      int version = 0;
      if (!absl::SimpleAtoi(trimmed, &version) ||
          version != static_cast<int>(migrations.size()) + 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(script_name, ":", line_number, ": migration marker \"", line,
                         "\": expected \"-- migration: ", migrations.size() + 1,
                         "\" (versions start at 1 and have no gaps)"));
      }
      migrations.push_back(Migration{version, ""});
      continue;
    }
    if (!migrations.empty()) absl::StrAppend(&migrations.back().sql, line, "\n");
  }
  if (migrations.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(script_name, ": no \"-- migration: 1\" marker found"));
  }
  return migrations;
}

absl::StatusOr<int> Migrate(Database* db, absl::Span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i) + 1) {
      return absl::InvalidArgumentError(absl::StrCat("sqlite ", db->path(), ": migration #", i,
                                                     " has version ", migrations[i].version,
                                                     ", expected ", i + 1));
    }
  }
  ONCE_ASSIGN_OR_RETURN(int64_t current, db->UserVersion());
  const int64_t latest = static_cast<int64_t>(migrations.size());
  if (current > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat("sqlite ", db->path(), ": schema version ", current,
                     " is newer than this program knows (", latest, "); refusing to use it"));
  }
  for (int64_t v = current + 1; v <= latest; ++v) {
    const Migration& m = migrations[v - 1];
    ONCE_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
    // Re-check under the write lock: another process may have migrated.
    ONCE_ASSIGN_OR_RETURN(int64_t now_at, db->UserVersion());
    if (now_at >= v) continue;
    absl::Status applied = db->Exec(m.sql);
    if (!applied.ok()) {
      return absl::Status(applied.code(),
                          absl::StrCat("applying migration ", v, ": ", applied.message()));
    }
    ONCE_RETURN_IF_ERROR(db->Exec(absl::StrCat("PRAGMA user_version=", v)));
    ONCE_RETURN_IF_ERROR(txn.Commit());
  }
  ONCE_ASSIGN_OR_RETURN(int64_t final_version, db->UserVersion());
  return static_cast<int>(final_version);
}

}  // namespace once::sqlite
