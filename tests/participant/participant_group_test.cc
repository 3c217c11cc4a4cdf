// The Participant with group commit on and off, against the scripted fake
// coordinator over real WebSocket connections on 127.0.0.1: a vote is only
// seen once its prepare is in the file, a burst is answered whole, and a
// group that fails to commit ends the session without any of its frames
// (the participant reconnects with nothing of it in doubt), and a burst
// longer than max_group_frames is cut into groups of that many.
#include <chrono>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "schema/txn_protocol.h"
#include "tests/participant/coordinator_frames.h"
#include "tests/participant/failing_end_resource.h"
#include "tests/participant/fake_coordinator.h"
#include "tests/participant/forwarding_resource.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once {
namespace {

namespace json = boost::json;
using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr uint64_t kEpoch = 7;

using participant::frames::Str;

std::string Welcome(uint64_t generation) {
  return participant::frames::Welcome(kEpoch, generation);
}

std::string Prepare(const std::string& txn, uint64_t generation, uint64_t offset,
                    const std::string& value) {
  return participant::frames::Prepare(txn, kEpoch, generation,
                                      {participant::frames::Payment(offset, value)});
}

std::string Commit(const std::string& txn, uint64_t generation) {
  return participant::frames::Commit(txn, kEpoch, generation);
}

// Forwards to a SqliteResource; counts the PREPAREs of each group, and
// takes `prepare_delay` over each, so that a burst sent back to back has
// all arrived before the first is handled.
class GroupSizeResource final : public testing::ForwardingResource {
 public:
  GroupSizeResource(SqliteResource* inner, absl::Duration prepare_delay)
      : ForwardingResource(inner), prepare_delay_(prepare_delay) {}

  absl::Status Prepare(const PreparedTxn& txn) override {
    absl::SleepFor(prepare_delay_);
    absl::MutexLock lock(&mu_);
    if (!sizes_.empty()) ++sizes_.back();
    return inner()->Prepare(txn);
  }
  absl::Status BeginGroup() override {
    absl::MutexLock lock(&mu_);
    sizes_.push_back(0);
    return inner()->BeginGroup();
  }

  // The PREPAREs of each group so far, in order.
  std::vector<int> sizes() const {
    absl::MutexLock lock(&mu_);
    return sizes_;
  }

 private:
  const absl::Duration prepare_delay_;
  mutable absl::Mutex mu_;
  std::vector<int> sizes_ ABSL_GUARDED_BY(mu_);
};

class ParticipantGroupTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_participant_group");
    path_ = (dir_ / "ledger.db").string();
    auto r = testing::OpenLedger(path_);
    ASSERT_TRUE(r.ok()) << r.status();
    resource_ = std::move(r).value();
  }
  void TearDown() override {
    participant_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  ParticipantOptions Options(bool group_commit) {
    ParticipantOptions o;
    o.url = fake_.url();
    o.topic = "payments";
    o.group = "ledger";
    o.participant_id = "ledger-1";
    o.window = 4;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 40;
    o.reask_interval_ms = 60'000;
    o.group_commit = group_commit;
    o.read_ahead = GetParam();
    return o;
  }

  void Start(bool group_commit, Resource* resource = nullptr,
             uint32_t max_group_frames = ParticipantOptions{}.max_group_frames) {
    ParticipantOptions options = Options(group_commit);
    options.max_group_frames = max_group_frames;
    ONCE_ASSERT_OK_AND_ASSIGN(
        participant_, Participant::Create(options, resource != nullptr ? resource : resource_.get(),
                                          testing::LedgerHandler));
    ONCE_ASSERT_OK(participant_->Start());
  }

  // Sends `count` PREPAREs back to back on a fresh session and waits for
  // their votes; the PREPAREs per group, in order.
  std::vector<int> GroupSizesOfABurst(int count, uint32_t max_group_frames) {
    GroupSizeResource sized(resource_.get(), absl::Milliseconds(20));
    Start(/*group_commit=*/true, &sized, max_group_frames);
    EXPECT_TRUE(fake_.ReceiveType(1, "hello").ok());
    fake_.SendText(1, Welcome(1));
    for (int i = 0; i < count; ++i) {
      fake_.SendText(1, Prepare(absl::StrCat("7.", i + 1), 1, static_cast<uint64_t>(i), "alice:1"));
    }
    for (int i = 0; i < count; ++i) EXPECT_EQ(ReceiveTxn(1, "vote"), absl::StrCat("7.", i + 1));
    participant_.reset();  // stops before `sized` goes
    return sized.sizes();
  }

  // The next frame of `type` on connection n, with its "txn".
  std::string ReceiveTxn(int n, const std::string& type) {
    auto frame = fake_.ReceiveType(n, type);
    EXPECT_TRUE(frame.ok()) << frame.status();
    return frame.ok() ? Str(*frame, "txn") : "";
  }

  // The txn's journal state as another connection sees the file: what is
  // committed there (0 = absent).
  int64_t StateInFile(const std::string& txn) {
    sqlite::DatabaseOptions options;
    options.read_only = true;
    auto db = sqlite::Database::Open(path_, options);
    if (!db.ok()) return -1;
    return (*db)
        ->QueryInt64("SELECT COALESCE(MAX(state), 0) FROM once_txns WHERE txn = '" + txn + "'")
        .value_or(-1);
  }

  testing::FakeCoordinator fake_;
  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<SqliteResource> resource_;
  std::unique_ptr<Participant> participant_;
};

TEST_P(ParticipantGroupTest, BurstIsAnsweredOnlyOnceDurable) {
  Start(/*group_commit=*/true);
  ASSERT_TRUE(fake_.ReceiveType(1, "hello").ok());
  fake_.SendText(1, Welcome(1));
  // Two prepares back to back: most likely one burst, one group.
  fake_.SendText(1, Prepare("7.1", 1, 0, "alice:10"));
  fake_.SendText(1, Prepare("7.2", 1, 1, "bob:3"));
  EXPECT_EQ(ReceiveTxn(1, "vote"), "7.1");
  EXPECT_EQ(StateInFile("7.1"), 1);  // prepared, in the file, when the vote came
  EXPECT_EQ(ReceiveTxn(1, "vote"), "7.2");
  EXPECT_EQ(StateInFile("7.2"), 1);
  fake_.SendText(1, Commit("7.1", 1));
  fake_.SendText(1, Commit("7.2", 1));
  EXPECT_EQ(ReceiveTxn(1, "done"), "7.1");
  EXPECT_EQ(StateInFile("7.1"), 2);  // committed, in the file, when DONE came
  EXPECT_EQ(ReceiveTxn(1, "done"), "7.2");
  EXPECT_EQ(StateInFile("7.2"), 2);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10), Pair("bob", 3)));
  const ParticipantStats s = participant_->stats();
  EXPECT_EQ(s.votes_yes, 2u);
  EXPECT_EQ(s.commits, 2u);
  EXPECT_EQ(s.session_failures, 0u);
}

// A burst longer than max_group_frames is several groups (several
// fsyncs), so its first votes go out while the rest is handled; without
// the cap the same burst makes longer groups.
TEST_P(ParticipantGroupTest, ALongBurstIsCutIntoGroupsOfMaxGroupFrames) {
  const std::vector<int> capped = GroupSizesOfABurst(8, /*max_group_frames=*/2);
  EXPECT_EQ(std::accumulate(capped.begin(), capped.end(), 0), 8);
  EXPECT_THAT(capped, ::testing::Each(::testing::Le(2)));
  EXPECT_GE(capped.size(), 4u);
}

TEST_P(ParticipantGroupTest, WithoutACapABurstIsOneGroupAfterItsFirstFrame) {
  const std::vector<int> uncapped = GroupSizesOfABurst(8, /*max_group_frames=*/0);
  EXPECT_EQ(std::accumulate(uncapped.begin(), uncapped.end(), 0), 8);
  // The first PREPARE may make a group alone (the rest still on its way);
  // the others, there before it was handled, share one.
  EXPECT_LE(uncapped.size(), 2u);
}

TEST_P(ParticipantGroupTest, GroupCommitOffStillCommitsExactlyOnce) {
  Start(/*group_commit=*/false);
  ASSERT_TRUE(fake_.ReceiveType(1, "hello").ok());
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, 0, "alice:10"));
  EXPECT_EQ(ReceiveTxn(1, "vote"), "7.1");
  EXPECT_EQ(StateInFile("7.1"), 1);
  fake_.SendText(1, Commit("7.1", 1));
  EXPECT_EQ(ReceiveTxn(1, "done"), "7.1");
  fake_.SendText(1, Commit("7.1", 1));  // duplicate: DONE again, nothing applied
  EXPECT_EQ(ReceiveTxn(1, "done"), "7.1");
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10)));
  EXPECT_EQ(participant_->stats().duplicate_commits, 1u);
}

TEST_P(ParticipantGroupTest, FailedGroupCommitEndsTheSessionWithoutItsVote) {
  testing::FailingEndResource failing(resource_.get());
  failing.fail_end = true;
  Start(/*group_commit=*/true, &failing);
  ASSERT_TRUE(fake_.ReceiveType(1, "hello").ok());
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, 0, "alice:10"));
  // The participant closes: no vote ever came on connection 1.
  EXPECT_THAT(fake_.ReceiveType(1, "vote"), StatusIs(absl::StatusCode::kUnavailable));
  // It reconnects, with nothing in doubt: the group was rolled back.
  failing.fail_end = false;
  auto hello = fake_.ReceiveType(2, "hello");
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_TRUE(hello->at("in_doubt").as_array().empty());
  EXPECT_EQ(StateInFile("7.1"), 0);
  fake_.SendText(2, Welcome(2));
  fake_.SendText(2, Prepare("7.1", 2, 0, "alice:10"));
  EXPECT_EQ(ReceiveTxn(2, "vote"), "7.1");
  const ParticipantStats s = participant_->stats();
  EXPECT_GE(s.session_failures, 1u);
  EXPECT_THAT(s.last_error, HasSubstr("disk gone"));
  EXPECT_EQ(s.votes_yes, 1u);  // only the vote that was sent
  participant_.reset();        // stops before `failing` goes
}

}  // namespace
// Each test runs with the WebSocket client on the SDK's thread and on a
// network thread of its own (ParticipantOptions::read_ahead).
INSTANTIATE_TEST_SUITE_P(Threads, ParticipantGroupTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "ReadAhead" : "OneThread");
                         });

}  // namespace once
