// The journal across a SIGKILL at each step of the participant's 2PC: a
// forked child drives a TxnSession (no network: its frames go to a
// vector) over a SqliteResource and kills itself at one crash point. The
// parent reopens the database and checks that every transaction is
// prepared, committed or absent — never half-applied — and then resolves
// it as the coordinator would, checking that every payment ends applied
// exactly once.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/src/journal.h"
#include "participant/src/txn_session.h"
#include "schema/txn_protocol.h"
#include "tests/participant/ledger_testing.h"
#include "tests/participant/session_driver.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once::participant {
namespace {

using session_testing::CommitFrame;
using session_testing::PrepareFrame;
using session_testing::WelcomeFrame;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

// The one transaction these tests prepare.
std::string PrepareFrame(const std::string& txn) {
  return PrepareFrame(txn, 0, {"alice:10", "bob:20", "alice:5"});
}

// A session without group commit: each call durable on its own.
struct Driver : session_testing::SessionDriver {
  explicit Driver(Resource* resource, std::function<void(absl::string_view)> hook = nullptr)
      : SessionDriver(resource, /*group_commit=*/false, std::move(hook)) {}
};

class JournalCrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = GetParam();
    for (char& c : name) {
      if (c == ':') c = '_';
    }
    dir_ = testing::FreshTestDir("once_journal_crash", name);
    path_ = (dir_ / "ledger.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs hello, welcome, prepare and commit of txn "3.1" in a child that
  // SIGKILLs itself at `point` ("" = never). Returns the child's signal.
  int RunChild(const std::string& point) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto kill_at = [point](absl::string_view at) {
        if (at == point) ::kill(::getpid(), SIGKILL);
      };
      SqliteResourceOptions options;
      options.crash_hook = kill_at;
      auto resource = testing::OpenLedger(path_, options);
      if (!resource.ok()) ::_exit(10);
      Driver d(resource->get(), kill_at);
      if (!d.session->Start().ok()) ::_exit(11);
      if (!d.session->OnFrame(WelcomeFrame({}), true).ok()) ::_exit(12);
      if (!d.session->OnFrame(PrepareFrame("3.1"), true).ok()) ::_exit(13);
      if (!d.session->OnFrame(CommitFrame("3.1"), true).ok()) ::_exit(14);
      ::_exit(0);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) return WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child failed before its crash point";
    return 0;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_P(JournalCrashTest, EveryTxnIsWholeAfterSigkillAndResolvesToExactlyOnce) {
  const std::string point = GetParam();
  const int sig = RunChild(point);
  EXPECT_EQ(sig, point.empty() ? 0 : SIGKILL);

  ONCE_ASSERT_OK_AND_ASSIGN(auto resource, testing::OpenLedger(path_));
  ONCE_ASSERT_OK(testing::CheckLedger(resource.get()));
  ONCE_ASSERT_OK_AND_ASSIGN(const TxnStatus status, resource->Status("3.1"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto balances, testing::Balances(resource.get()));
  int64_t staged = 0;
  ONCE_ASSERT_OK(resource->WithDatabase([&staged](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(const std::vector<StagedMessage> messages,
                          participant::LoadStaged(db, "3.1"));
    staged = static_cast<int64_t>(messages.size());
    return absl::OkStatus();
  }));
  if (point == "prepare:staged") {
    EXPECT_EQ(status, TxnStatus::kAbsent);  // nothing durable before the journal write
  } else if (point.empty()) {
    EXPECT_EQ(status, TxnStatus::kCommitted);
  } else {
    // Journaled, voted or mid-apply: prepared with all three messages
    // staged, and nothing applied (the local commit rolled back).
    EXPECT_EQ(status, TxnStatus::kPrepared);
    EXPECT_EQ(staged, 3);
    EXPECT_THAT(balances, IsEmpty());
  }

  // Restart: hello lists the in-doubt txn; the coordinator holds the
  // COMMIT record (it had decided before the crash) and says commit. A
  // txn that never got journaled is re-prepared (presumed abort and
  // redelivery).
  Driver d(resource.get());
  ONCE_ASSERT_OK(d.session->Start());
  ASSERT_FALSE(d.sent.empty());
  const auto& hello = std::get<protocol::Hello>(d.sent.front());
  if (status == TxnStatus::kPrepared) {
    EXPECT_THAT(hello.in_doubt, ElementsAre("3.1"));
    ONCE_ASSERT_OK(d.session->OnFrame(WelcomeFrame({{"3.1", protocol::Outcome::kCommit}}), true));
    ASSERT_EQ(d.sent.size(), 2u);
    EXPECT_EQ(std::get<protocol::Done>(d.sent[1]).txn, "3.1");
  } else {
    EXPECT_THAT(hello.in_doubt, IsEmpty());
    ONCE_ASSERT_OK(d.session->OnFrame(WelcomeFrame({}), true));
    if (status == TxnStatus::kAbsent) {
      ONCE_ASSERT_OK(d.session->OnFrame(PrepareFrame("3.2"), true));
      ONCE_ASSERT_OK(d.session->OnFrame(CommitFrame("3.2"), true));
    } else {
      // Committed before the "crash": the coordinator's COMMIT re-sent
      // after reconnect is a duplicate: DONE again, nothing applied.
      ONCE_ASSERT_OK(d.session->OnFrame(CommitFrame("3.1"), true));
      EXPECT_EQ(d.stats.Get().duplicate_commits, 1u);
    }
  }
  ONCE_ASSERT_OK_AND_ASSIGN(balances, testing::Balances(resource.get()));
  EXPECT_THAT(balances, ElementsAre(Pair("alice", 15), Pair("bob", 20)));
  ONCE_EXPECT_OK(testing::CheckLedger(resource.get()));
  EXPECT_THAT(*resource->Recover(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, JournalCrashTest,
                         ::testing::Values("", "prepare:staged", "prepare:journaled", "vote:sent",
                                           "commit:applying"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.empty() ? "no_crash" : info.param;
                           for (char& c : name) {
                             if (c == ':') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace once::participant
