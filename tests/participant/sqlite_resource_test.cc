#include "once/sqlite_resource.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/src/effect_codec.h"
#include "participant/src/journal.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/fake_clock.h"
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

class SqliteResourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_sqlite_resource");
    Reopen();
  }
  void TearDown() override {
    r_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Reopens the ledger with `options` on the test's clock.
  void Reopen(SqliteResourceOptions options = {}) {
    r_.reset();
    options.clock = &clock_;
    auto r = testing::OpenLedger((dir_ / "ledger.db").string(), options);
    ASSERT_TRUE(r.ok()) << r.status();
    r_ = std::move(r).value();
  }

  std::filesystem::path dir_;
  testing::FakeClock clock_;
  std::unique_ptr<SqliteResource> r_;
};

TEST_F(SqliteResourceTest, FreshJournalIsAtTheLastMigration) {
  EXPECT_THAT(testing::QueryInt(r_.get(), "PRAGMA user_version"), testing::IsOk());
  EXPECT_EQ(*testing::QueryInt(r_.get(), "PRAGMA user_version"), 2);
  EXPECT_THAT(*r_->Recover(), IsEmpty());
}

TEST_F(SqliteResourceTest, PrepareThenCommitAppliesOnceAndRecordsIds) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5), Pay("p/0/1", "b", 7)})));
  EXPECT_THAT(*r_->Recover(), ElementsAre("1.1"));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  // Prepared: nothing applied yet.
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());
  ONCE_ASSERT_OK_AND_ASSIGN(CommitResult result, r_->Commit("1.1"));
  EXPECT_FALSE(result.already_committed);
  EXPECT_EQ(result.applied, 2);
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5), Pair("b", 7)));
  EXPECT_TRUE(*r_->IsCommitted("p/0/0"));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kCommitted);
  EXPECT_THAT(*r_->Recover(), IsEmpty());
  // Staged effects are dropped once applied.
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txn_staged"), 0);
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceTest, DuplicateCommitAppliesNothing) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  ONCE_ASSERT_OK_AND_ASSIGN(CommitResult again, r_->Commit("1.1"));
  EXPECT_TRUE(again.already_committed);
  EXPECT_EQ(again.applied, 0);
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5)));
}

TEST_F(SqliteResourceTest, CommitOfUnknownTxnIsNotFound) {
  EXPECT_THAT(r_->Commit("9.9"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("9.9")));
}

TEST_F(SqliteResourceTest, AbortDiscardsAndCannotUndoACommit) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->Abort("1.1"));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kAbsent);
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txn_staged"), 0);
  ONCE_EXPECT_OK(r_->Abort("1.1"));  // absent: nothing to do
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->Commit("1.2").status());
  EXPECT_THAT(r_->Abort("1.2"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5)));
}

TEST_F(SqliteResourceTest, PrepareTwiceIsAlreadyExists) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  EXPECT_THAT(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

// Model rule 3: two in-doubt txns staged the same message; committing
// both applies it once.
TEST_F(SqliteResourceTest, GuardAtApplyTimeSkipsIdsCommittedSinceTheVote) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/0", "a", 5), Pay("p/0/1", "a", 1)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  ONCE_ASSERT_OK_AND_ASSIGN(CommitResult second, r_->Commit("1.2"));
  EXPECT_EQ(second.applied, 1);
  EXPECT_EQ(second.skipped, 1);
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 6)));
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceTest, EffectsThatCannotApplyAreRefusedAtPrepare) {
  StagedMessage bad{"p/0/0", false, {Effect{"INSERT INTO no_such_table VALUES (1)", {}}}};
  EXPECT_THAT(r_->Prepare(Txn("1.1", {bad})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p/0/0")));
  StagedMessage wrong_count{"p/0/1", false, {Effect{"SELECT ?1, ?2", {int64_t{1}}}}};
  EXPECT_THAT(r_->Prepare(Txn("1.2", {wrong_count})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes 2 parameters")));
  StagedMessage two{"p/0/2", false, {Effect{"SELECT 1; SELECT 2", {}}}};
  EXPECT_THAT(r_->Prepare(Txn("1.3", {two})), StatusIs(absl::StatusCode::kInvalidArgument));
  // Nothing journaled, and the trial run left no trace.
  EXPECT_THAT(*r_->Recover(), IsEmpty());
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txns"), 0);
}

TEST_F(SqliteResourceTest, TrialRunIsRolledBack) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM payments"), 0);
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());
}

TEST_F(SqliteResourceTest, PreparedTxnSurvivesReopen) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  Reopen();
  EXPECT_THAT(*r_->Recover(), ElementsAre("1.1"));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5)));
}

TEST_F(SqliteResourceTest, OneStagedRowPerTransactionWhateverItsSize) {
  ONCE_ASSERT_OK(
      r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5), Pay("p/0/1", "b", 7), Pay("p/0/2", "a", 1)})));
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txn_staged"), 1);
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txn_messages"), 0);
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(std::vector<StagedMessage> staged, participant::LoadStaged(db, "1.1"));
    EXPECT_EQ(staged.size(), 3u);
    if (staged.size() == 3) {
      EXPECT_EQ(staged[2].message_id, "p/0/2");
    }
    return absl::OkStatus();
  }));
}

// A journal written by version 1 of the schema staged one once_txn_messages
// row per message. Opening it migrates to version 2, and what it had
// prepared still commits from those rows.
TEST_F(SqliteResourceTest, AVersionOneJournalsPreparedTxnCommitsAfterTheUpgrade) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5), Pay("p/0/1", "b", 7)})));
  // Rewrite the journal as version 1 left it: the staged messages as rows,
  // no once_txn_staged table, user_version 1.
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(std::vector<StagedMessage> staged, participant::LoadStaged(db, "1.1"));
    ONCE_ASSIGN_OR_RETURN(sqlite::Statement row,
                          db->Prepare("INSERT INTO once_txn_messages (txn, seq, message_id, "
                                      "skipped, effects) VALUES ('1.1', ?1, ?2, 0, ?3)"));
    for (size_t i = 0; i < staged.size(); ++i) {
      ONCE_RETURN_IF_ERROR(row.Reset());
      ONCE_RETURN_IF_ERROR(row.BindInt64(1, static_cast<int64_t>(i)));
      ONCE_RETURN_IF_ERROR(row.BindText(2, staged[i].message_id));
      ONCE_RETURN_IF_ERROR(row.BindBlob(3, participant::EncodeEffects(staged[i].effects)));
      ONCE_RETURN_IF_ERROR(row.Run());
    }
    ONCE_RETURN_IF_ERROR(db->Exec("DROP TABLE once_txn_staged"));
    return db->Exec("PRAGMA user_version = 1");
  }));
  Reopen();
  EXPECT_EQ(*testing::QueryInt(r_.get(), "PRAGMA user_version"), 2);
  EXPECT_THAT(*r_->Recover(), ElementsAre("1.1"));
  ONCE_ASSERT_OK_AND_ASSIGN(CommitResult result, r_->Commit("1.1"));
  EXPECT_EQ(result.applied, 2);
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5), Pair("b", 7)));
  EXPECT_EQ(*testing::QueryInt(r_.get(), "SELECT COUNT(*) FROM once_txn_messages"), 0);
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceTest, DamagedStagedBlobIsDataLossAndAppliesNothing) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) {
    return db->Exec("UPDATE once_txn_staged SET staged = X'0102030405060708090A'");
  }));
  EXPECT_THAT(r_->Commit("1.1"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("1.1")));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());
}

TEST_F(SqliteResourceTest, DamagedEffectBlobIsDataLossAndAppliesNothing) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) -> absl::Status {
    // A version-1 row whose effect blob is damaged.
    ONCE_RETURN_IF_ERROR(db->Exec("DELETE FROM once_txn_staged"));
    return db->Exec(
        "INSERT INTO once_txn_messages (txn, seq, message_id, skipped, effects) "
        "VALUES ('1.1', 0, 'p/0/0', 0, X'0102030405060708090A')");
  }));
  EXPECT_THAT(r_->Commit("1.1"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("1.1")));
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kPrepared);
  EXPECT_THAT(*testing::Balances(r_.get()), IsEmpty());
}

TEST_F(SqliteResourceTest, ApplyOnceSkipsARecordedId) {
  Staging s;
  Message m;
  m.id = "p/1/0";
  m.value = "a:3";
  ONCE_ASSERT_OK(testing::LedgerHandler(m, s));
  EXPECT_TRUE(*r_->ApplyOnce("p/1/0", s.effects()));
  EXPECT_FALSE(*r_->ApplyOnce("p/1/0", s.effects()));
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 3)));
  ONCE_EXPECT_OK(CheckLedger(r_.get()));
}

TEST_F(SqliteResourceTest, CommittedTxnsArePrunedPastRetentionButIdsStay) {
  SqliteResourceOptions options;
  options.keep_committed_ms = 1000;
  options.keep_committed_min = 1;
  Reopen(options);
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 5)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  clock_.Advance(5000);
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/1", "a", 1)})));
  ONCE_ASSERT_OK(r_->Commit("1.2").status());
  EXPECT_EQ(*r_->Status("1.1"), TxnStatus::kAbsent);
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kCommitted);
  EXPECT_TRUE(*r_->IsCommitted("p/0/0"));
}

TEST_F(SqliteResourceTest, PruningKeepsTheNewestKeepCommittedMin) {
  SqliteResourceOptions options;
  options.keep_committed_ms = 1000;
  options.keep_committed_min = 3;
  Reopen(options);
  for (int i = 1; i <= 5; ++i) {
    const std::string txn = absl::StrCat("1.", i);
    ONCE_ASSERT_OK(r_->Prepare(Txn(txn, {Pay(absl::StrCat("p/0/", i), "a", 1)})));
    ONCE_ASSERT_OK(r_->Commit(txn).status());
    clock_.Advance(10);
  }
  clock_.Advance(5000);  // all five past keep_committed_ms, and past the prune interval
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.6", {Pay("p/0/6", "a", 1)})));
  ONCE_ASSERT_OK(r_->Commit("1.6").status());
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(*r_->Status(absl::StrCat("1.", i)),
              i <= 3 ? TxnStatus::kAbsent : TxnStatus::kCommitted)
        << "txn 1." << i;
    EXPECT_TRUE(*r_->IsCommitted(absl::StrCat("p/0/", i)));
  }
}

TEST_F(SqliteResourceTest, NewerJournalVersionIsRefused) {
  ONCE_ASSERT_OK(
      r_->WithDatabase([](sqlite::Database* db) { return db->Exec("PRAGMA user_version = 99"); }));
  r_.reset();
  EXPECT_THAT(SqliteResource::Open((dir_ / "ledger.db").string()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace once
