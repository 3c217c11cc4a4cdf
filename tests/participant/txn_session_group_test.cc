// TxnSession with group commit, driven frame by frame (no network): the
// votes and DONEs of a burst are held back until Flush() made the burst's
// group durable, then sent in order; a group that fails to commit, or a
// session that fails or dies with a group open, sends nothing of it and
// keeps nothing of it.
#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/src/txn_session.h"
#include "schema/txn_protocol.h"
#include "tests/participant/failing_end_resource.h"
#include "tests/participant/ledger_testing.h"
#include "tests/participant/session_driver.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once::participant {
namespace {

using ::once::testing::StatusIs;
using session_testing::CommitFrame;
using session_testing::PrepareFrame;
using session_testing::WelcomeFrame;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

std::string PrepareFrame(const std::string& txn, uint64_t offset, const std::string& value) {
  return PrepareFrame(txn, offset, std::vector<std::string>{value});
}

// A frame sent, in short: "vote 3.1 yes", "done 3.1", "hello".
std::string Describe(const protocol::Frame& f) {
  if (const auto* v = std::get_if<protocol::Vote>(&f)) {
    return "vote " + v->txn + (v->yes ? " yes" : " no");
  }
  if (const auto* d = std::get_if<protocol::Done>(&f)) return "done " + d->txn;
  return std::string(protocol::TypeName(f));
}

class TxnSessionGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_txn_group");
    auto r = testing::OpenLedger((dir_ / "ledger.db").string());
    ASSERT_TRUE(r.ok()) << r.status();
    resource_ = std::move(r).value();
    options_.topic = "payments";
    options_.group = "ledger";
    options_.participant_id = "p1";
    handler_ = testing::LedgerHandler;
  }
  void TearDown() override {
    session_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A new session over `resource` (default: the SqliteResource), hello
  // sent and (with `welcome`) welcomed.
  void NewSession(bool group_commit = true, Resource* resource = nullptr) {
    session_.reset();
    sent_.clear();
    SessionEnv env;
    env.options = &options_;
    env.resource = resource != nullptr ? resource : resource_.get();
    env.handler = &handler_;
    env.stats = &stats_;
    env.group_commit = group_commit;
    env.send = [this](std::string f) { sent_.push_back(Describe(protocol::Decode(f).value())); };
    session_ = std::make_unique<TxnSession>(std::move(env));
    ONCE_ASSERT_OK(session_->Start());
    ASSERT_THAT(sent_, ElementsAre("hello"));
    sent_.clear();
  }
  void Open(bool group_commit = true, Resource* resource = nullptr) {
    NewSession(group_commit, resource);
    ONCE_ASSERT_OK(session_->OnFrame(WelcomeFrame(), true));
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> resource_;
  ParticipantOptions options_;
  Handler handler_;
  StatsBox stats_;
  std::vector<std::string> sent_;
  std::unique_ptr<TxnSession> session_;
};

TEST_F(TxnSessionGroupTest, BurstIsSentOnlyAfterFlushInOrder) {
  Open();
  EXPECT_FALSE(session_->pending());
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  EXPECT_THAT(sent_, IsEmpty());
  EXPECT_TRUE(session_->pending());
  EXPECT_EQ(stats_.Get().votes_yes, 0u);  // counted once durable and sent
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, ElementsAre("vote 3.1 yes"));
  EXPECT_FALSE(session_->pending());
  EXPECT_EQ(stats_.Get().votes_yes, 1u);

  // One burst: COMMIT of 3.1 and PREPARE of 3.2 share one group.
  sent_.clear();
  ONCE_ASSERT_OK(session_->OnFrame(CommitFrame("3.1"), true));
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.2", 1, "bob:20"), true));
  EXPECT_THAT(sent_, IsEmpty());
  EXPECT_EQ(stats_.Get().commits, 0u);
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, ElementsAre("done 3.1", "vote 3.2 yes"));
  EXPECT_EQ(stats_.Get().commits, 1u);
  EXPECT_EQ(stats_.Get().votes_yes, 2u);
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kCommitted);
  EXPECT_EQ(*resource_->Status("3.2"), TxnStatus::kPrepared);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10)));

  // Nothing held: Flush sends nothing more.
  sent_.clear();
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, IsEmpty());
}

TEST_F(TxnSessionGroupTest, NoVoteIsHeldLikeAYes) {
  Open();
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "fail"), true));
  EXPECT_THAT(sent_, IsEmpty());
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, ElementsAre("vote 3.1 no"));
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kAbsent);
}

TEST_F(TxnSessionGroupTest, FailedEndGroupSendsNothingAndEndsTheSession) {
  testing::FailingEndResource failing(resource_.get());
  Open(true, &failing);
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  failing.fail_end = true;
  EXPECT_THAT(session_->Flush(),
              StatusIs(absl::StatusCode::kUnavailable,
                       ::testing::AllOf(HasSubstr("disk gone"), HasSubstr("1 held frames"))));
  EXPECT_THAT(sent_, IsEmpty());
  EXPECT_FALSE(session_->pending());
  EXPECT_EQ(stats_.Get().votes_yes, 0u);
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kAbsent);
  // The session is over: later calls repeat the error, touch nothing.
  failing.fail_end = false;
  EXPECT_THAT(session_->OnFrame(PrepareFrame("3.2", 1, "bob:20"), true),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(session_->OnTimer(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(*resource_->Status("3.2"), TxnStatus::kAbsent);
  EXPECT_THAT(sent_, IsEmpty());
}

TEST_F(TxnSessionGroupTest, ViolationInsideABurstAbandonsItsGroup) {
  Open();
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  EXPECT_THAT(session_->OnFrame("{\"type\":\"prepare\",", true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("protocol violation")));
  EXPECT_FALSE(session_->pending());
  EXPECT_THAT(session_->Flush(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(sent_, IsEmpty());
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kAbsent);
  // The resource is free again: a group can start.
  ONCE_ASSERT_OK(resource_->BeginGroup());
  ONCE_ASSERT_OK(resource_->EndGroup());
}

TEST_F(TxnSessionGroupTest, SessionDestroyedWithAGroupOpenKeepsNothing) {
  Open();
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  session_.reset();
  EXPECT_THAT(sent_, IsEmpty());
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kAbsent);
  ONCE_ASSERT_OK(resource_->BeginGroup());
  ONCE_ASSERT_OK(resource_->EndGroup());
}

TEST_F(TxnSessionGroupTest, WelcomeResolutionsAreGroupedAndDoneAfterFlush) {
  Open();
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.2", 1, "bob:20"), true));
  ONCE_ASSERT_OK(session_->Flush());
  // Reconnect: hello lists both; the coordinator commits one, aborts one.
  NewSession();
  ONCE_ASSERT_OK(session_->OnFrame(
      WelcomeFrame({{"3.1", protocol::Outcome::kCommit}, {"3.2", protocol::Outcome::kAbort}}),
      true));
  EXPECT_TRUE(session_->pending());
  EXPECT_THAT(sent_, IsEmpty());
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, ElementsAre("done 3.1"));
  EXPECT_EQ(*resource_->Status("3.1"), TxnStatus::kCommitted);
  EXPECT_EQ(*resource_->Status("3.2"), TxnStatus::kAbsent);
  EXPECT_EQ(stats_.Get().aborts, 1u);
  ONCE_EXPECT_OK(testing::CheckLedger(resource_.get()));
}

TEST_F(TxnSessionGroupTest, ReaskInsideAnOpenGroupIsHeldWithIt) {
  Open();
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  ONCE_ASSERT_OK(session_->Flush());
  sent_.clear();
  ONCE_ASSERT_OK(session_->OnTimer());  // 3.1 in doubt: re-asked next tick
  EXPECT_THAT(sent_, IsEmpty());
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.2", 1, "bob:20"), true));
  ONCE_ASSERT_OK(session_->OnTimer());
  EXPECT_THAT(sent_, IsEmpty());
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_THAT(sent_, ElementsAre("vote 3.2 yes", "vote 3.1 yes"));
  // No group open: a re-ask goes out at once (3.1 and 3.2 are durable).
  sent_.clear();
  ONCE_ASSERT_OK(session_->OnTimer());
  EXPECT_THAT(sent_, ElementsAre("vote 3.1 yes", "vote 3.2 yes"));
  EXPECT_FALSE(session_->pending());
}

// Counts the local transactions committed on the resource's connection:
// in WAL mode each is one WAL commit, and one fsync under synchronous=FULL.
// (The hook replaces SQLite's auto-checkpoint for the test's duration.)
class WalCommitCounter {
 public:
  explicit WalCommitCounter(SqliteResource* r) : r_(r) {
    EXPECT_TRUE(r_->WithDatabase([this](sqlite::Database* db) {
                    sqlite3_wal_hook(db->handle(), &WalCommitCounter::OnCommit, this);
                    return absl::OkStatus();
                  }).ok());
  }
  ~WalCommitCounter() {
    (void)r_->WithDatabase([](sqlite::Database* db) {
      sqlite3_wal_autocheckpoint(db->handle(), 1000);  // SQLite's default hook back
      return absl::OkStatus();
    });
  }
  int commits() const { return commits_; }

 private:
  static int OnCommit(void* self, sqlite3*, const char*, int) {
    ++static_cast<WalCommitCounter*>(self)->commits_;
    return SQLITE_OK;
  }
  SqliteResource* const r_;
  int commits_ = 0;
};

// The point of group commit: a burst of COMMIT(n-1) + PREPARE(n), the
// steady state of a consumer, is one local transaction instead of two.
TEST_F(TxnSessionGroupTest, EachBurstIsOneLocalTransaction) {
  constexpr int kBursts = 20;
  for (const bool group_commit : {true, false}) {
    SCOPED_TRACE(group_commit ? "group commit" : "no group commit");
    const std::string prefix = group_commit ? "g" : "n";
    const uint64_t first_offset = group_commit ? 0 : 1000;
    Open(group_commit);
    WalCommitCounter counter(resource_.get());
    ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame(prefix + "0", first_offset, "a:1"), true));
    ONCE_ASSERT_OK(session_->Flush());
    for (int i = 1; i <= kBursts; ++i) {
      ONCE_ASSERT_OK(session_->OnFrame(CommitFrame(prefix + std::to_string(i - 1)), true));
      ONCE_ASSERT_OK(session_->OnFrame(
          PrepareFrame(prefix + std::to_string(i), first_offset + i, "a:1"), true));
      ONCE_ASSERT_OK(session_->Flush());
    }
    EXPECT_EQ(counter.commits(), group_commit ? 1 + kBursts : 1 + 2 * kBursts);
    EXPECT_EQ(sent_.size(), 1u + 2 * kBursts);
  }
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("a", 2 * kBursts)));
}

TEST_F(TxnSessionGroupTest, WithoutGroupCommitEveryFrameGoesOutAtOnce) {
  Open(/*group_commit=*/false);
  ONCE_ASSERT_OK(session_->OnFrame(PrepareFrame("3.1", 0, "alice:10"), true));
  EXPECT_THAT(sent_, ElementsAre("vote 3.1 yes"));
  EXPECT_FALSE(session_->pending());
  ONCE_ASSERT_OK(session_->OnFrame(CommitFrame("3.1"), true));
  EXPECT_THAT(sent_, ElementsAre("vote 3.1 yes", "done 3.1"));
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_EQ(sent_.size(), 2u);
}

}  // namespace
}  // namespace once::participant
