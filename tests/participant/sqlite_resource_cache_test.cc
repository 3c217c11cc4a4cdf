// The SqliteResource runs its journal statements and the consumer's
// effects from the connection's statement cache: statements are reused
// across transactions, a failing effect leaves the cache usable, and a
// schema change by the consumer between transactions is picked up.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/sqlite_resource.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once {
namespace {

using ::once::testing::Pay;
using ::once::testing::StatusIs;
using ::once::testing::Txn;
using ::testing::ElementsAre;
using ::testing::Pair;

class SqliteResourceCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_sqlite_resource_cache");
    auto r = testing::OpenLedger((dir_ / "ledger.db").string());
    ASSERT_TRUE(r.ok()) << r.status();
    r_ = std::move(r).value();
  }
  void TearDown() override {
    r_.reset();
    std::filesystem::remove_all(dir_);
  }

  size_t IdleStatements() {
    size_t n = 0;
    EXPECT_TRUE(r_->WithDatabase([&n](sqlite::Database* db) {
                    n = db->idle_statements();
                    return absl::OkStatus();
                  }).ok());
    return n;
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> r_;
};

TEST_F(SqliteResourceCacheTest, StatementsAreReusedAcrossTransactions) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 1), Pay("p/0/1", "b", 2)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  const size_t after_first = IdleStatements();
  // Every statement went back to the cache (none is held between calls).
  EXPECT_GT(after_first, 0u);
  for (int t = 2; t <= 20; ++t) {
    std::vector<StagedMessage> batch;
    for (int i = 0; i < 10; ++i) {
      batch.push_back(Pay("p/" + std::to_string(t) + "/" + std::to_string(i), "a", 1));
    }
    ONCE_ASSERT_OK(r_->Prepare(Txn("1." + std::to_string(t), std::move(batch))));
    ONCE_ASSERT_OK(r_->Commit("1." + std::to_string(t)).status());
  }
  // The same SQL again and again: the cache does not grow with the work.
  EXPECT_EQ(IdleStatements(), after_first);
  EXPECT_LE(IdleStatements(), sqlite::Database::kMaxIdleStatements);
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 191), Pair("b", 2)));
  ONCE_ASSERT_OK(testing::CheckLedger(r_.get()));
}

TEST_F(SqliteResourceCacheTest, AFailingEffectLeavesTheCacheUsable) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 1)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  // The same payment id again: the payments insert hits its primary key
  // inside the trial run, and the vote is NO (nothing journaled).
  StagedMessage dup = Pay("p/0/0", "a", 1);
  dup.message_id = "p/0/9";
  EXPECT_THAT(r_->Prepare(Txn("1.2", {dup})), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(*r_->Status("1.2"), TxnStatus::kAbsent);
  // The statements that failed were reset on their way back.
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.3", {Pay("p/0/1", "a", 4)})));
  ONCE_ASSERT_OK(r_->Commit("1.3").status());
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 5)));
}

TEST_F(SqliteResourceCacheTest, SchemaChangesBetweenTransactionsArePickedUp) {
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.1", {Pay("p/0/0", "a", 1)})));
  ONCE_ASSERT_OK(r_->Commit("1.1").status());
  // The consumer changes its schema while compiled statements are cached.
  ONCE_ASSERT_OK(r_->WithDatabase([](sqlite::Database* db) {
    return db->Exec("ALTER TABLE accounts ADD COLUMN note TEXT DEFAULT 'x'");
  }));
  ONCE_ASSERT_OK(r_->Prepare(Txn("1.2", {Pay("p/0/1", "a", 2)})));
  ONCE_ASSERT_OK(r_->Commit("1.2").status());
  EXPECT_THAT(*testing::Balances(r_.get()), ElementsAre(Pair("a", 3)));
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t notes, testing::QueryInt(r_.get(),
                                                             "SELECT count(*) FROM accounts WHERE "
                                                             "note = 'x'"));
  EXPECT_EQ(notes, 1);
}

}  // namespace
}  // namespace once
