// SqliteResource's group commit (BeginGroup/EndGroup/AbortGroup): one local
// transaction for many calls, each call atomic on its own inside it (a
// SAVEPOINT), nothing durable before EndGroup, nothing kept of a group
// that is abandoned, and other threads kept out of an open group.
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/sqlite_resource.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once {
namespace {

using ::once::testing::CheckLedger;
using ::once::testing::Pay;
using ::once::testing::StatusIs;
using ::once::testing::Txn;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

class SqliteResourceGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_sqlite_group");
    path_ = (dir_ / "ledger.db").string();
    Reopen();
  }
  void TearDown() override {
    r_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    r_.reset();
    SqliteResourceOptions options;
    options.crash_hook = [this](absl::string_view point) {
      absl::MutexLock lock(&hooks_mu_);
      hooks_.emplace_back(point);
    };
    auto r = testing::OpenLedger(path_, options);
    ASSERT_TRUE(r.ok()) << r.status();
    r_ = std::move(r).value();
  }
  std::vector<std::string> Hooks() {
    absl::MutexLock lock(&hooks_mu_);
    return std::exchange(hooks_, {});
  }

  // The state another connection sees: what is committed in the file.
  absl::StatusOr<int64_t> CommittedTxnRows(const std::string& txn) {
    sqlite::DatabaseOptions options;
    options.read_only = true;
    ONCE_ASSIGN_OR_RETURN(auto db, sqlite::Database::Open(path_, options));
    return db->QueryInt64("SELECT COUNT(*) FROM once_txns WHERE txn = '" + txn + "'");
  }

  std::filesystem::path dir_;
  std::string path_;
  absl::Mutex hooks_mu_;
  std::vector<std::string> hooks_ ABSL_GUARDED_BY(hooks_mu_);
  std::unique_ptr<SqliteResource> r_;
};

TEST_F(SqliteResourceGroupTest, GroupKeepsEachSuccessfulCallAndIsDurableOnlyAtEnd) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/2", "bob", 20)})));  // B, before the group
  EXPECT_THAT(Hooks(), ElementsAre("prepare:journaled"));

  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));  // A
  ONCE_ASSERT_OK_AND_ASSIGN(const CommitResult b, r_->Commit("1.2"));
  EXPECT_EQ(b.applied, 1);
  // C's effects cannot apply (no such table): vote NO, nothing of C kept,
  // and A and B stay in the group.
  StagedMessage bad{"p/0/3", false, {Effect{"INSERT INTO nowhere VALUES (?1)", {int64_t{1}}}}};
  EXPECT_THAT(r_->Prepare(Txn("1.3", {bad})), StatusIs(absl::StatusCode::kInvalidArgument));
  // The group's thread sees its own calls ...
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kCommitted);
  EXPECT_EQ(*r_->Status("1.3"), TxnStatus::kAbsent);
  EXPECT_TRUE(*r_->IsCommitted("p/0/2"));
  // ... which are not in the file yet: another connection sees none of A.
  EXPECT_EQ(CommittedTxnRows("1.1").value_or(-1), 0);
  EXPECT_THAT(Hooks(), ElementsAre("prepare:grouped", "commit:applying"));

  ONCE_ASSERT_OK(r_->EndGroup());
  EXPECT_THAT(Hooks(), ElementsAre("group:committing", "group:committed"));
  EXPECT_EQ(CommittedTxnRows("1.1").value_or(-1), 1);

  Reopen();
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kCommitted);
  EXPECT_EQ(*r_->Status("1.3"), TxnStatus::kAbsent);
  EXPECT_THAT(*r_->Recover(), ElementsAre("1.1"));
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("bob", 20)));
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceGroupTest, FailedCommitInsideGroupUndoesOnlyItsOwnPart) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/2", "bob", 20), Pay("p/0/4", "carol", 4)})));
  // A payments row with 1.2's second id appears behind the journal's back:
  // 1.2's apply now fails half-way, after its first message's effects.
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) {
    return db->Exec("INSERT INTO payments VALUES ('p/0/4', 'carol', 4)");
  }));
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  EXPECT_FALSE(r_->Commit("1.2").ok());
  ONCE_ASSERT_OK(r_->EndGroup());

  Reopen();
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kPrepared);
  EXPECT_FALSE(*r_->IsCommitted("p/0/2"));
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());  // bob's 20 rolled back
}

TEST_F(SqliteResourceGroupTest, DiskFullInsideAGroupKeepsTheGroupWholeOrNothing) {
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  // The file may not grow any more: a big prepare fails with SQLITE_FULL,
  // after which SQLite may have rolled back the statement or the whole
  // transaction. Either way the group must stay all or nothing.
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(const int64_t pages, db->QueryInt64("PRAGMA page_count"));
    return db->Exec("PRAGMA max_page_count = " + std::to_string(pages));
  }));
  StagedMessage big{"p/0/9",
                    false,
                    {Effect{"INSERT INTO payments VALUES (?1, ?2, 1)",
                            {std::string("p/0/9"), std::string(1 << 20, 'x')}}}};
  EXPECT_FALSE(r_->Prepare(Txn("1.9", {big})).ok());
  bool group_lost = false;
  ONCE_ASSERT_OK(r_->WithDatabase([&group_lost](sqlite::Database* db) {
    group_lost = sqlite3_get_autocommit(db->handle()) != 0;
    return db->Exec("PRAGMA max_page_count = 1073741823");
  }));
  // (SQLite 3.40 rolls the whole transaction back here.) A call after the
  // group's transaction is gone must not run on its own, outside it.
  const absl::Status next = r_->Prepare(Txn("1.2", {Pay("p/0/2", "bob", 20)}));
  if (group_lost) {
    EXPECT_THAT(next, StatusIs(absl::StatusCode::kAborted, HasSubstr("rolled back by SQLite")));
  } else {
    ONCE_EXPECT_OK(next);
  }
  const absl::Status ended = r_->EndGroup();
  EXPECT_EQ(ended.ok(), !group_lost) << ended;
  Reopen();
  const TxnStatus kept = group_lost ? TxnStatus::kAbsent : TxnStatus::kPrepared;
  EXPECT_EQ(*r_->Status("1.9"), TxnStatus::kAbsent);
  EXPECT_EQ(*r_->Status("1.1"), kept);
  EXPECT_EQ(*r_->Status("1.2"), kept);
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceGroupTest, GroupAbandonedByDestroyingTheResourceLeavesNothing) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/2", "bob", 20)})));
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  ONCE_ASSERT_OK(r_->Commit("1.2").status());
  ONCE_ASSERT_OK(r_->Abort("1.1"));
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.4", {Pay("p/0/5", "dave", 1)})));
  Reopen();  // destroys the resource with the group open
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kAbsent);
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kPrepared);
  EXPECT_EQ(*r_->Status("1.4"), TxnStatus::kAbsent);
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceGroupTest, AbortGroupRollsBackAndANewGroupCanStart) {
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  r_->AbortGroup();
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kAbsent);
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  ONCE_ASSERT_OK(r_->EndGroup());
  Reopen();
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
}

TEST_F(SqliteResourceGroupTest, MisusedGroupsAreFailedPrecondition) {
  EXPECT_THAT(r_->EndGroup(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("this thread has no group open")));
  r_->AbortGroup();  // no group: nothing happens
  ONCE_ASSERT_OK(r_->BeginGroup());
  EXPECT_THAT(r_->BeginGroup(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("has a group open already")));
  // The first group is intact.
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/1", "alice", 10)})));
  ONCE_ASSERT_OK(r_->EndGroup());
  EXPECT_THAT(r_->EndGroup(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
}

TEST_F(SqliteResourceGroupTest, GroupThreadRunsWithDatabaseInsideTheGroup) {
  // The handler runs on the group's thread and may read the consumer's
  // tables: it must neither deadlock nor see anything but the group.
  ONCE_ASSERT_OK(r_->BeginGroup());
  bool inside = false;
  ONCE_ASSERT_OK(r_->WithDatabase([&inside](sqlite::Database* db) {
    inside = sqlite3_get_autocommit(db->handle()) == 0;
    return absl::OkStatus();
  }));
  EXPECT_TRUE(inside);
  ONCE_ASSERT_OK(r_->EndGroup());
}

TEST_F(SqliteResourceGroupTest, OtherThreadsWaitForTheGroupInsteadOfLandingInIt) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/2", "bob", 20)})));
  ONCE_ASSERT_OK(r_->BeginGroup());
  ONCE_ASSERT_OK(r_->Commit("1.2").status());

  absl::Notification started;
  absl::Notification finished;
  absl::StatusOr<bool> committed = false;
  bool other_inside_a_txn = true;
  std::thread other([&] {
    started.Notify();
    committed = r_->IsCommitted("p/0/2");
    ONCE_EXPECT_OK(r_->WithDatabase([&](sqlite::Database* db) {
      other_inside_a_txn = sqlite3_get_autocommit(db->handle()) == 0;
      return absl::OkStatus();
    }));
    finished.Notify();
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Bounded: a resource that let the other thread in would finish here.
  EXPECT_FALSE(finished.WaitForNotificationWithTimeout(absl::Milliseconds(100)))
      << "another thread ran inside the open group";
  ONCE_ASSERT_OK(r_->EndGroup());
  EXPECT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(10)));
  other.join();
  // It ran after the group: the commit is there, and it was not inside
  // any transaction.
  ONCE_ASSERT_OK(committed);
  EXPECT_TRUE(*committed);
  EXPECT_FALSE(other_inside_a_txn);
}

TEST_F(SqliteResourceGroupTest, EndGroupFromAnotherThreadIsRefusedWithoutWaiting) {
  ONCE_ASSERT_OK(r_->BeginGroup());
  absl::Status from_other;
  std::thread other([&] { from_other = r_->EndGroup(); });
  other.join();
  EXPECT_THAT(from_other, StatusIs(absl::StatusCode::kFailedPrecondition));
  ONCE_ASSERT_OK(r_->EndGroup());
}

}  // namespace
}  // namespace once
