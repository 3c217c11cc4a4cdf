// Group commit across a SIGKILL: a forked child drives a TxnSession with
// group_commit on over a SqliteResource through two bursts
//
//   burst 1: PREPARE 3.1                      Flush (one group)
//   burst 2: COMMIT 3.1, PREPARE 3.2          Flush (one group)
//
// and kills itself at the n-th hit of one crash point. At EVERY crash
// point it passes, before dying, the child checks through a second
// connection (which sees only what is committed in the file) that each
// vote and DONE it has sent is backed by durable state: a YES only for a
// txn prepared or committed, a DONE only for a committed one. The parent
// then checks that each txn is whole (absent, prepared or committed as the
// point implies) and resolves everything as the coordinator would,
// checking that every payment ends applied exactly once.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
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

// A group-committing session.
struct Driver : session_testing::SessionDriver {
  Driver(Resource* resource, std::function<void(absl::string_view)> hook)
      : SessionDriver(resource, /*group_commit=*/true, std::move(hook)) {}
};

// The payments of the two transactions (re-prepared under new ids when
// the crash lost them).
const std::vector<std::string> kPayments1 = {"alice:10", "bob:20"};
const std::vector<std::string> kPayments2 = {"carol:7", "alice:5"};

// OK when every YES vote in `sent` is for a txn prepared or committed in
// the file at `path`, and every DONE for a committed one, as another
// connection sees the file (committed data only).
absl::Status SentIsDurable(const std::string& path, const std::vector<protocol::Frame>& sent) {
  sqlite::DatabaseOptions options;
  options.read_only = true;
  ONCE_ASSIGN_OR_RETURN(auto db, sqlite::Database::Open(path, options));
  for (const protocol::Frame& f : sent) {
    std::string txn;
    int64_t min_state = 0;
    if (const auto* v = std::get_if<protocol::Vote>(&f); v != nullptr && v->yes) {
      txn = v->txn;
      min_state = kJournalPrepared;
    } else if (const auto* d = std::get_if<protocol::Done>(&f)) {
      txn = d->txn;
      min_state = kJournalCommitted;
    } else {
      continue;
    }
    ONCE_ASSIGN_OR_RETURN(
        const int64_t state,
        db->QueryInt64("SELECT COALESCE(MAX(state), 0) FROM once_txns WHERE txn = '" + txn + "'"));
    if (state < min_state) {
      return absl::InternalError("a frame for txn " + txn + " was sent before it was durable");
    }
  }
  return absl::OkStatus();
}

class GroupCommitCrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = GetParam();
    for (char& c : name) {
      if (c == ':' || c == '#') c = '_';
    }
    dir_ = testing::FreshTestDir("once_group_crash", name);
    path_ = (dir_ / "ledger.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the two bursts in a child that SIGKILLs itself at the n-th hit of
  // `point` ("point#n", n = 1 when left out; "" = never). Returns the
  // child's signal, or -exit code when it exited with an error.
  int RunChild(const std::string& param) {
    std::vector<std::string> parts = absl::StrSplit(param, '#');
    const std::string point = parts[0];
    int nth = 1;
    if (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &nth)) ADD_FAILURE() << param;
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::map<std::string, int> hits;
      Driver* driver = nullptr;
      auto at = [&](absl::string_view where) {
        if (driver != nullptr && !SentIsDurable(path_, driver->sent).ok()) ::_exit(20);
        if (where == point && ++hits[std::string(where)] == nth) ::kill(::getpid(), SIGKILL);
      };
      SqliteResourceOptions options;
      options.crash_hook = at;
      auto resource = testing::OpenLedger(path_, options);
      if (!resource.ok()) ::_exit(10);
      Driver d(resource->get(), at);
      driver = &d;
      if (!d.session->Start().ok()) ::_exit(11);
      if (!d.session->OnFrame(WelcomeFrame({}), true).ok()) ::_exit(12);
      if (!d.session->OnFrame(PrepareFrame("3.1", 0, kPayments1), true).ok()) ::_exit(13);
      at("test:before-flush");
      if (!d.session->Flush().ok()) ::_exit(14);
      if (!d.session->OnFrame(CommitFrame("3.1"), true).ok()) ::_exit(15);
      if (!d.session->OnFrame(PrepareFrame("3.2", 2, kPayments2), true).ok()) ::_exit(16);
      at("test:before-flush");
      if (!d.session->Flush().ok()) ::_exit(17);
      at("test:end");
      ::_exit(0);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) return WTERMSIG(status);
    return -WEXITSTATUS(status);
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_P(GroupCommitCrashTest, NothingIsSentBeforeItIsDurableAndAllEndsAppliedOnce) {
  const std::string param = GetParam();
  const int result = RunChild(param);
  ASSERT_NE(result, -20) << "the child sent a vote or DONE for state not durable yet";
  ASSERT_EQ(result, param.empty() ? 0 : SIGKILL) << "the child failed before its crash point";

  ONCE_ASSERT_OK_AND_ASSIGN(auto resource, testing::OpenLedger(path_));
  ONCE_ASSERT_OK(testing::CheckLedger(resource.get()));
  ONCE_ASSERT_OK_AND_ASSIGN(const TxnStatus s1, resource->Status("3.1"));
  ONCE_ASSERT_OK_AND_ASSIGN(const TxnStatus s2, resource->Status("3.2"));
  // What each crash point leaves: a group is all or nothing.
  const std::map<std::string, std::pair<TxnStatus, TxnStatus>> expected = {
      {"", {TxnStatus::kCommitted, TxnStatus::kPrepared}},
      {"prepare:staged", {TxnStatus::kAbsent, TxnStatus::kAbsent}},
      {"prepare:grouped", {TxnStatus::kAbsent, TxnStatus::kAbsent}},
      {"vote:held", {TxnStatus::kAbsent, TxnStatus::kAbsent}},
      {"test:before-flush", {TxnStatus::kAbsent, TxnStatus::kAbsent}},
      {"group:committing", {TxnStatus::kAbsent, TxnStatus::kAbsent}},
      {"group:committed", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"flush:durable", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"flush:sent", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"commit:applying", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"prepare:grouped#2", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"test:before-flush#2", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"group:committing#2", {TxnStatus::kPrepared, TxnStatus::kAbsent}},
      {"group:committed#2", {TxnStatus::kCommitted, TxnStatus::kPrepared}},
      {"flush:sent#2", {TxnStatus::kCommitted, TxnStatus::kPrepared}},
  };
  ASSERT_TRUE(expected.contains(param)) << param;
  EXPECT_EQ(s1, expected.at(param).first);
  EXPECT_EQ(s2, expected.at(param).second);
  if (s1 != TxnStatus::kCommitted) {
    EXPECT_THAT(*testing::Balances(resource.get()), IsEmpty());
  }

  // Restart: hello lists the in-doubt txns; the coordinator commits 3.1
  // and (say it never got the vote) aborts 3.2. Lost payments are
  // re-prepared under new txn ids (redelivery after presumed abort).
  Driver d(resource.get(), nullptr);
  ONCE_ASSERT_OK(d.session->Start());
  std::vector<protocol::Resolution> resolutions;
  if (s1 == TxnStatus::kPrepared) resolutions.push_back({"3.1", protocol::Outcome::kCommit});
  if (s2 == TxnStatus::kPrepared) resolutions.push_back({"3.2", protocol::Outcome::kAbort});
  EXPECT_EQ(std::get<protocol::Hello>(d.sent.front()).in_doubt.size(), resolutions.size());
  ONCE_ASSERT_OK(d.session->OnFrame(WelcomeFrame(resolutions), true));
  if (s1 == TxnStatus::kAbsent) {
    ONCE_ASSERT_OK(d.session->OnFrame(PrepareFrame("4.1", 0, kPayments1), true));
  }
  ONCE_ASSERT_OK(d.session->OnFrame(PrepareFrame("4.2", 2, kPayments2), true));
  ONCE_ASSERT_OK(d.session->Flush());
  if (s1 == TxnStatus::kAbsent) {
    ONCE_ASSERT_OK(d.session->OnFrame(CommitFrame("4.1"), true));
  }
  ONCE_ASSERT_OK(d.session->OnFrame(CommitFrame("4.2"), true));
  ONCE_ASSERT_OK(d.session->Flush());

  ONCE_ASSERT_OK_AND_ASSIGN(auto balances, testing::Balances(resource.get()));
  EXPECT_THAT(balances, ElementsAre(Pair("alice", 15), Pair("bob", 20), Pair("carol", 7)));
  ONCE_EXPECT_OK(testing::CheckLedger(resource.get()));
  EXPECT_THAT(*resource->Recover(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, GroupCommitCrashTest,
                         ::testing::Values("", "prepare:staged", "prepare:grouped", "vote:held",
                                           "test:before-flush", "group:committing",
                                           "group:committed", "flush:durable", "flush:sent",
                                           "commit:applying", "prepare:grouped#2",
                                           "test:before-flush#2", "group:committing#2",
                                           "group:committed#2", "flush:sent#2"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.empty() ? "no_crash" : info.param;
                           for (char& c : name) {
                             if (c == ':' || c == '#' || c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace once::participant
