#include "schema/sqlite.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/groups_sql.h"
#include "tests/testing/status_matchers.h"

namespace once::sqlite {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::HasSubstr;

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_sqlite_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/test.db"; }

  std::unique_ptr<Database> OpenOrDie(const DatabaseOptions& options = {}) {
    auto db = Database::Open(path(), options);
    EXPECT_THAT(db, IsOk());
    return db.ok() ? *std::move(db) : nullptr;
  }

  std::string dir_;
};

TEST_F(SqliteTest, OpensInWalWithFullSync) {
  auto db = OpenOrDie();
  ASSERT_NE(db, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(Statement mode, db->Prepare("PRAGMA journal_mode"));
  ONCE_ASSERT_OK_AND_ASSIGN(bool row, mode.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(mode.ColumnText(0), "wal");
  EXPECT_THAT(db->QueryInt64("PRAGMA synchronous"),
              ::testing::Not(StatusIs(absl::StatusCode::kNotFound)));
  EXPECT_EQ(*db->QueryInt64("PRAGMA synchronous"), 2);  // FULL
  EXPECT_EQ(*db->QueryInt64("PRAGMA foreign_keys"), 1);
}

// Whether this process holds an SQLite temporary file open (SQLite
// unlinks them at once; /proc still shows them).
bool HoldsATempFile() {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().find("etilqs_") != std::string::npos) return true;
  }
  return false;
}

// A savepoint that changes ~400 KiB of existing pages: its undo pages
// (the statement journal) stay in memory by default; with
// temp_in_memory off SQLite spills them to a file in its temp directory.
TEST_F(SqliteTest, ASavepointsUndoPagesStayInMemory) {
  for (const bool in_memory : {true, false}) {
    SCOPED_TRACE(in_memory ? "temp_in_memory" : "temp files");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    DatabaseOptions options;
    options.temp_in_memory = in_memory;
    std::unique_ptr<Database> db = OpenOrDie(options);
    ASSERT_NE(db, nullptr);
    ASSERT_THAT(db->Exec("CREATE TABLE t (x BLOB NOT NULL)"), IsOk());
    ASSERT_THAT(db->Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                         "WHERE i < 400) INSERT INTO t SELECT zeroblob(1000) FROM n"),
                IsOk());
    ASSERT_THAT(db->Exec("BEGIN"), IsOk());
    ASSERT_THAT(db->Exec("SAVEPOINT s"), IsOk());
    ASSERT_THAT(db->Exec("UPDATE t SET x = randomblob(1000)"), IsOk());
    EXPECT_EQ(HoldsATempFile(), !in_memory);
    ASSERT_THAT(db->Exec("ROLLBACK TO s"), IsOk());
    ASSERT_THAT(db->Exec("COMMIT"), IsOk());
    ONCE_ASSERT_OK_AND_ASSIGN(const int64_t unchanged,
                              db->QueryInt64("SELECT count(*) FROM t WHERE x = zeroblob(1000)"));
    EXPECT_EQ(unchanged, 400);
  }
}

TEST_F(SqliteTest, BindStepAndColumns) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n TEXT)"));
  ONCE_ASSERT_OK_AND_ASSIGN(Statement ins,
                            db->Prepare("INSERT INTO t VALUES (?1, ?2, :s, ?4, ?5)"));
  ONCE_ASSERT_OK_AND_ASSIGN(int s_index, ins.ParameterIndex(":s"));
  EXPECT_EQ(s_index, 3);
  EXPECT_THAT(ins.ParameterIndex(":nope"), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string blob("a\0b", 3);
  for (int i = 0; i < 2; ++i) {
    ONCE_ASSERT_OK(ins.Reset());
    ONCE_ASSERT_OK(ins.BindInt64(1, int64_t{1} << 40 | i));
    ONCE_ASSERT_OK(ins.BindDouble(2, 2.5));
    ONCE_ASSERT_OK(ins.BindText(3, "héllo"));
    ONCE_ASSERT_OK(ins.BindBlob(4, i == 0 ? blob : std::string()));
    ONCE_ASSERT_OK(ins.BindNull(5));
    ONCE_ASSERT_OK(ins.Run());
    EXPECT_EQ(db->Changes(), 1);
  }
  EXPECT_EQ(db->LastInsertRowId(), 2);
  EXPECT_THAT(ins.BindInt64(9, 1), StatusIs(absl::StatusCode::kInvalidArgument));

  ONCE_ASSERT_OK_AND_ASSIGN(Statement q, db->Prepare("SELECT i, d, s, b, n FROM t ORDER BY i;"));
  EXPECT_EQ(q.ColumnCount(), 5);
  EXPECT_EQ(q.ColumnName(2), "s");
  ONCE_ASSERT_OK_AND_ASSIGN(bool row, q.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(q.ColumnInt64(0), int64_t{1} << 40);
  EXPECT_EQ(q.ColumnDouble(1), 2.5);
  EXPECT_EQ(q.ColumnText(2), "héllo");
  EXPECT_EQ(q.ColumnBlob(3), blob);
  EXPECT_TRUE(q.ColumnIsNull(4));
  ONCE_ASSERT_OK_AND_ASSIGN(row, q.Step());
  ASSERT_TRUE(row);
  EXPECT_FALSE(q.ColumnIsNull(3));  // an empty blob is not NULL
  EXPECT_EQ(q.ColumnBlob(3), "");
  ONCE_ASSERT_OK_AND_ASSIGN(row, q.Step());
  EXPECT_FALSE(row);
}

TEST_F(SqliteTest, PrepareRefusesBadOrMultipleStatements) {
  auto db = OpenOrDie();
  EXPECT_THAT(db->Prepare("SELEKT 1"), StatusIs(absl::StatusCode::kInternal, HasSubstr("SELEKT")));
  EXPECT_THAT(db->Prepare("SELECT 1; SELECT 2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than one")));
  EXPECT_THAT(db->Prepare("  "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(db->QueryInt64("SELECT 1 WHERE 0"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SqliteTest, ConstraintViolationsMapToStatusCodes) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"));
  ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES ('a', 1)"));
  EXPECT_THAT(db->Exec("INSERT INTO t VALUES ('a', 2)"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(path())));
  ONCE_ASSERT_OK_AND_ASSIGN(Statement s, db->Prepare("INSERT INTO t VALUES ('b', NULL)"));
  EXPECT_THAT(s.Run(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("NOT NULL")));
  // The statement is usable again after a failed step.
  ONCE_ASSERT_OK_AND_ASSIGN(Statement ok, db->Prepare("INSERT INTO t VALUES ('c', 3)"));
  ONCE_ASSERT_OK(ok.Run());
}

TEST_F(SqliteTest, PrepareCachedReusesCompiledStatements) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"));
  const std::string sql = "INSERT INTO t VALUES (?1, ?2)";
  sqlite3_stmt* first = nullptr;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Statement ins, db->PrepareCached(sql));
    first = ins.handle();
    ONCE_ASSERT_OK(ins.BindText(1, "a"));
    ONCE_ASSERT_OK(ins.BindInt64(2, 1));
    ONCE_ASSERT_OK(ins.Run());
    // In use: a second one with the same SQL is another statement.
    ONCE_ASSERT_OK_AND_ASSIGN(Statement other, db->PrepareCached(sql));
    EXPECT_NE(other.handle(), first);
    EXPECT_EQ(db->idle_statements(), 0u);
  }
  EXPECT_EQ(db->idle_statements(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(Statement again, db->PrepareCached(sql));
  EXPECT_TRUE(again.handle() != nullptr);
  EXPECT_EQ(db->idle_statements(), 1u);
  // Given back reset and with its bindings cleared: v is NULL now.
  ONCE_ASSERT_OK(again.BindText(1, "b"));
  ONCE_ASSERT_OK(again.Run());
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM t WHERE k = 'b' AND v IS NULL"), 1);
  // A moved-from statement gives nothing back twice.
  Statement moved = std::move(again);
  EXPECT_FALSE(again.valid());  // NOLINT(bugprone-use-after-move): checks the move
  EXPECT_EQ(db->idle_statements(), 1u);
  // Plain Prepare never touches the cache.
  { ONCE_ASSERT_OK_AND_ASSIGN(Statement plain, db->Prepare(sql)); }
  EXPECT_EQ(db->idle_statements(), 1u);
}

TEST_F(SqliteTest, ExecCachedCompilesEachStatementOnceAndReportsErrors) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (k INTEGER PRIMARY KEY)"));
  for (int i = 0; i < 3; ++i) {
    ONCE_ASSERT_OK(db->ExecCached("BEGIN IMMEDIATE"));
    ONCE_ASSERT_OK(db->ExecCached("INSERT INTO t DEFAULT VALUES"));
    ONCE_ASSERT_OK(db->ExecCached("COMMIT"));
  }
  EXPECT_EQ(db->idle_statements(), 3u);  // one of each, compiled once
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM t"), 3);
  EXPECT_THAT(db->ExecCached("COMMIT"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("no transaction is active")));
  EXPECT_THAT(db->ExecCached("SELEKT 1"), StatusIs(absl::StatusCode::kInternal));
  // The COMMIT that failed went back to the cache and works again.
  ONCE_ASSERT_OK(db->ExecCached("BEGIN IMMEDIATE"));
  ONCE_ASSERT_OK(db->ExecCached("COMMIT"));
  EXPECT_EQ(db->idle_statements(), 3u);
}

TEST_F(SqliteTest, PrepareCachedSurvivesAFailedStepAndStaysBounded) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY)"));
  ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES ('a')"));
  const std::string sql = "INSERT INTO t VALUES (?1)";
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Statement dup, db->PrepareCached(sql));
    ONCE_ASSERT_OK(dup.BindText(1, "a"));
    EXPECT_THAT(dup.Run(), StatusIs(absl::StatusCode::kAlreadyExists));
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Statement ok, db->PrepareCached(sql));
    ONCE_ASSERT_OK(ok.BindText(1, "b"));
    ONCE_ASSERT_OK(ok.Run());
  }
  EXPECT_THAT(db->PrepareCached("SELEKT 1"), StatusIs(absl::StatusCode::kInternal));
  {
    std::vector<Statement> many;
    for (size_t i = 0; i < Database::kMaxIdleStatements + 10; ++i) {
      ONCE_ASSERT_OK_AND_ASSIGN(Statement s, db->PrepareCached(absl::StrCat("SELECT ", i)));
      many.push_back(std::move(s));
    }
  }
  EXPECT_EQ(db->idle_statements(), Database::kMaxIdleStatements);
  // The database closes with idle statements in its cache (leak-checked
  // under ASan).
}

TEST_F(SqliteTest, CachedStatementsKeepTheirSqlAcrossMovesAndErrors) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (k TEXT PRIMARY KEY)"));
  ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES ('a')"));
  const std::string sql = "INSERT INTO t VALUES (?1)";
  {
    // Compiled here (not in the cache yet).
    ONCE_ASSERT_OK_AND_ASSIGN(Statement first, db->PrepareCached(sql));
    EXPECT_EQ(first.sql(), sql);
    ONCE_ASSERT_OK(first.BindText(1, "a"));
    EXPECT_THAT(first.Run(), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(sql)));
    Statement moved(std::move(first));
    EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move): checks the move
    EXPECT_EQ(moved.sql(), sql);
    EXPECT_THAT(moved.BindText(2, "x"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(sql)));
  }
  EXPECT_EQ(db->idle_statements(), 1u);
  // Taken from the cache: the same SQL, in errors too.
  ONCE_ASSERT_OK_AND_ASSIGN(Statement again, db->PrepareCached(sql));
  EXPECT_EQ(db->idle_statements(), 0u);
  EXPECT_EQ(again.sql(), sql);
  EXPECT_THAT(again.ParameterIndex(":nope"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(sql)));
  // Moved onto a cached statement: that one goes back to the cache, and the
  // moved one keeps its SQL and its way back.
  ONCE_ASSERT_OK_AND_ASSIGN(Statement target, db->PrepareCached("SELECT 1"));
  target = std::move(again);
  EXPECT_EQ(db->idle_statements(), 1u);  // SELECT 1
  EXPECT_EQ(target.sql(), sql);
  ONCE_ASSERT_OK(target.BindText(1, "b"));
  ONCE_ASSERT_OK(target.Run());
  // Moved onto a plain statement, which is finalized, not cached.
  ONCE_ASSERT_OK_AND_ASSIGN(Statement plain, db->Prepare("SELECT 2"));
  EXPECT_EQ(plain.sql(), "SELECT 2");
  plain = std::move(target);
  EXPECT_EQ(plain.sql(), sql);
  EXPECT_EQ(db->idle_statements(), 1u);
  { Statement gone = std::move(plain); }
  EXPECT_EQ(db->idle_statements(), 2u);
  // Given back with its bindings cleared: ?1 is NULL, which a TEXT PRIMARY
  // KEY accepts (SQLite), as a fresh row.
  ONCE_ASSERT_OK(db->ExecCached(sql));
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM t WHERE k IS NULL"), 1);
  // SQL that holds two statements leaves the cache as it was (and leaks
  // no compiled statement: ASan).
  EXPECT_THAT(db->PrepareCached("SELECT 1; SELECT 2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than one")));
  EXPECT_EQ(db->idle_statements(), 2u);
}

TEST_F(SqliteTest, CachedStatementsBeyondTheIdleCapAreFinalized) {
  auto db = OpenOrDie();
  {
    std::vector<Statement> many;
    for (size_t i = 0; i < Database::kMaxIdleStatements; ++i) {
      ONCE_ASSERT_OK_AND_ASSIGN(Statement s, db->PrepareCached(absl::StrCat("SELECT ", i)));
      many.push_back(std::move(s));
    }
  }
  ASSERT_EQ(db->idle_statements(), Database::kMaxIdleStatements);
  const std::string sql = "SELECT 'twin'";
  for (int round = 0; round < 3; ++round) {
    // Two of the same SQL out at once; the first given back is finalized
    // (the cache is full), while the second still needs its SQL.
    std::optional<Statement> a;
    {
      ONCE_ASSERT_OK_AND_ASSIGN(Statement s, db->PrepareCached(sql));
      a.emplace(std::move(s));
    }
    ONCE_ASSERT_OK_AND_ASSIGN(Statement b, db->PrepareCached(sql));
    EXPECT_NE(a->handle(), b.handle());
    a.reset();
    EXPECT_EQ(db->idle_statements(), Database::kMaxIdleStatements);
    EXPECT_EQ(b.sql(), sql);
    ONCE_ASSERT_OK_AND_ASSIGN(bool row, b.Step());
    ASSERT_TRUE(row);
    EXPECT_EQ(b.ColumnText(0), "twin");
  }
  EXPECT_EQ(db->idle_statements(), Database::kMaxIdleStatements);
  // An idle one taken and given back returns to the cache.
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Statement s, db->PrepareCached("SELECT 7"));
    EXPECT_EQ(db->idle_statements(), Database::kMaxIdleStatements - 1);
    EXPECT_EQ(s.sql(), "SELECT 7");
  }
  EXPECT_EQ(db->idle_statements(), Database::kMaxIdleStatements);
}

TEST_F(SqliteTest, TransactionRollsBackUnlessCommitted) {
  auto db = OpenOrDie();
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (v INTEGER)"));
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db.get()));
    ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES (1)"));
  }  // dropped: rolled back
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM t"), 0);
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db.get()));
    ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES (2)"));
    ONCE_ASSERT_OK(txn.Commit());
    EXPECT_THAT(txn.Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(Transaction txn,
                              Transaction::Begin(db.get(), TransactionMode::kDeferred));
    ONCE_ASSERT_OK(db->Exec("INSERT INTO t VALUES (3)"));
    ONCE_ASSERT_OK(txn.Rollback());
  }
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM t"), 1);
  // A second connection sees only committed data and waits on the lock.
  DatabaseOptions quick;
  quick.busy_timeout_ms = 1;
  auto other = OpenOrDie(quick);
  ONCE_ASSERT_OK_AND_ASSIGN(Transaction txn, Transaction::Begin(db.get()));
  EXPECT_THAT(Transaction::Begin(other.get()), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(*other->QueryInt64("SELECT COUNT(*) FROM t"), 1);
}

TEST_F(SqliteTest, NotADatabaseIsDataLoss) {
  {
    std::ofstream f(path());
    f << std::string(4096, 'x');
  }
  EXPECT_THAT(Database::Open(path()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path())));
}

TEST_F(SqliteTest, MissingFileWithoutCreateFails) {
  DatabaseOptions options;
  options.create_if_missing = false;
  EXPECT_THAT(Database::Open(path(), options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("opening")));
}

TEST_F(SqliteTest, ParseMigrationsSplitsNumberedSections) {
  ONCE_ASSERT_OK_AND_ASSIGN(
      std::vector<Migration> m,
      ParseMigrations("-- header\n-- migration: 1\nCREATE TABLE a (x);\n-- migration: 2\n"
                      "CREATE TABLE b (y);\n",
                      "test.sql"));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].version, 1);
  EXPECT_EQ(m[0].sql, "CREATE TABLE a (x);\n");
  EXPECT_EQ(m[1].version, 2);
  EXPECT_THAT(ParseMigrations("-- migration: 2\n", "x.sql"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.sql:1")));
  EXPECT_THAT(ParseMigrations("-- migration: 1\n-- migration: 1\n", "x.sql"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.sql:2")));
  EXPECT_THAT(ParseMigrations("CREATE TABLE a (x);", "x.sql"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no")));
}

TEST_F(SqliteTest, MigrateAppliesOnlyWhatIsMissing) {
  std::vector<Migration> v1 = {{1, "CREATE TABLE a (x INTEGER);"}};
  std::vector<Migration> v2 = {v1[0], {2, "ALTER TABLE a ADD COLUMN y INTEGER;"}};
  {
    auto db = OpenOrDie();
    EXPECT_THAT(Migrate(db.get(), v1), ::testing::Eq(absl::StatusOr<int>(1)));
    EXPECT_THAT(Migrate(db.get(), v1), ::testing::Eq(absl::StatusOr<int>(1)));  // idempotent
  }
  {
    auto db = OpenOrDie();
    EXPECT_THAT(Migrate(db.get(), v2), ::testing::Eq(absl::StatusOr<int>(2)));
    ONCE_ASSERT_OK(db->Exec("INSERT INTO a (x, y) VALUES (1, 2)"));
    // An older program refuses the newer schema.
    EXPECT_THAT(Migrate(db.get(), v1),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newer")));
  }
}

TEST_F(SqliteTest, FailedMigrationLeavesTheWholePreviousVersion) {
  auto db = OpenOrDie();
  std::vector<Migration> bad = {{1, "CREATE TABLE a (x);"},
                                {2, "CREATE TABLE b (y); INSERT INTO nowhere VALUES (1);"}};
  EXPECT_THAT(Migrate(db.get(), bad),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("applying migration 2")));
  EXPECT_EQ(*db->UserVersion(), 1);
  EXPECT_THAT(db->Exec("SELECT * FROM b"), StatusIs(absl::StatusCode::kInternal));
}

TEST_F(SqliteTest, GroupsSchemaAppliesCleanly) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Migration> m,
                            ParseMigrations(schema::GroupsSql(), "schema/groups.sql"));
  ASSERT_GE(m.size(), 1u);
  auto db = OpenOrDie();
  EXPECT_THAT(Migrate(db.get(), m), ::testing::Eq(absl::StatusOr<int>(static_cast<int>(m.size()))));
  EXPECT_EQ(*db->QueryInt64("SELECT COUNT(*) FROM sqlite_master WHERE name = 'acked_ranges'"), 1);
}

TEST_F(SqliteTest, InMemoryDatabase) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, Database::Open(":memory:"));
  ONCE_ASSERT_OK(db->Exec("CREATE TABLE t (v); INSERT INTO t VALUES (7);"));
  EXPECT_EQ(*db->QueryInt64("SELECT v FROM t"), 7);
}

}  // namespace
}  // namespace once::sqlite
