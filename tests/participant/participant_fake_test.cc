// The Participant against a scripted fake coordinator over real WebSocket
// connections on 127.0.0.1: the commit and abort paths, in-doubt
// resolution after a restart, duplicate commits, the committed-id guard,
// and the session's refusal of protocol-violating frames.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "boost/json/serialize.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "participant/src/journal.h"
#include "schema/txn_protocol.h"
#include "tests/participant/coordinator_frames.h"
#include "tests/participant/fake_coordinator.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr uint64_t kEpoch = 7;

// TCP_NODELAY of every socket of this process connected to 127.0.0.1:port
// (the participant's side of its connections to the fake coordinator).
std::vector<int> NoDelayOfSocketsConnectedTo(uint16_t port) {
  std::vector<int> found;
  for (int fd = 0; fd < 1024; ++fd) {
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    if (peer.sin_family != AF_INET || ntohs(peer.sin_port) != port) continue;
    int on = 0;
    socklen_t on_len = sizeof(on);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &on_len) != 0) continue;
    found.push_back(on);
  }
  return found;
}

using participant::frames::Payment;
using participant::frames::Str;

std::string Welcome(uint64_t generation, std::vector<protocol::Resolution> resolutions = {}) {
  return participant::frames::Welcome(kEpoch, generation, std::move(resolutions));
}

std::string Prepare(const std::string& txn, uint64_t generation,
                    std::vector<protocol::TxnMessage> messages, uint64_t epoch = kEpoch) {
  return participant::frames::Prepare(txn, epoch, generation, std::move(messages));
}

std::string Commit(const std::string& txn, uint64_t generation, uint64_t epoch = kEpoch) {
  return participant::frames::Commit(txn, epoch, generation);
}

std::string Abort(const std::string& txn, uint64_t generation) {
  return participant::frames::Abort(txn, kEpoch, generation);
}

class ParticipantFakeTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_participant_fake");
    auto r = testing::OpenLedger((dir_ / "ledger.db").string());
    ASSERT_TRUE(r.ok()) << r.status();
    resource_ = std::move(r).value();
  }
  void TearDown() override {
    participant_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  ParticipantOptions Options() {
    ParticipantOptions o;
    o.url = fake_.url();
    o.topic = "payments";
    o.group = "ledger";
    o.participant_id = "ledger-1";
    o.window = 4;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 40;
    o.reask_interval_ms = 60'000;  // tests that want re-asks lower it
    o.connect_timeout_ms = 5'000;
    o.read_ahead = GetParam();
    return o;
  }

  void StartParticipant(ParticipantOptions options) {
    ONCE_ASSERT_OK_AND_ASSIGN(
        participant_, Participant::Create(options, resource_.get(), testing::LedgerHandler));
    ONCE_ASSERT_OK(participant_->Start());
  }

  // Waits for connection n's hello; returns it.
  json::object ExpectHello(int n) {
    auto hello = fake_.Receive(n);
    EXPECT_TRUE(hello.ok()) << hello.status();
    if (!hello.ok()) return {};
    EXPECT_EQ(Str(*hello, "type"), "hello");
    EXPECT_EQ(Str(*hello, "participant"), "ledger-1");
    return *hello;
  }

  // The vote for `txn` on connection n: "yes" or "no".
  std::string ExpectVote(int n, const std::string& txn) {
    auto vote = fake_.ReceiveType(n, "vote");
    EXPECT_TRUE(vote.ok()) << vote.status();
    if (!vote.ok()) return "";
    EXPECT_EQ(Str(*vote, "txn"), txn);
    return Str(*vote, "vote");
  }

  void ExpectDone(int n, const std::string& txn) {
    auto done = fake_.ReceiveType(n, "done");
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(Str(*done, "txn"), txn);
  }

  std::map<std::string, int64_t> Balances() { return testing::Balances(resource_.get()).value(); }

  testing::FakeCoordinator fake_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> resource_;
  std::unique_ptr<Participant> participant_;
};

TEST_P(ParticipantFakeTest, CommitPathAppliesOnceAndSendsDone) {
  StartParticipant(Options());
  json::object hello = ExpectHello(1);
  EXPECT_TRUE(hello.at("in_doubt").as_array().empty());
  EXPECT_EQ(hello.at("window").to_number<int64_t>(), 4);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10"), Payment(1, "bob:3")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  EXPECT_THAT(Balances(), IsEmpty());  // nothing before the decision
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10), Pair("bob", 3)));
  ONCE_EXPECT_OK(testing::CheckLedger(resource_.get()));
  const ParticipantStats s = participant_->stats();
  EXPECT_EQ(s.commits, 1u);
  EXPECT_EQ(s.messages_applied, 2u);
  EXPECT_EQ(s.session_failures, 0u);
}

TEST_P(ParticipantFakeTest, FramesGoOutWithoutWaitingForTheServersAck) {
  // A vote and a DONE often leave back to back; with Nagle's algorithm the
  // second would wait for the ACK of the first, which a server may delay
  // by up to 40 ms.
  StartParticipant(Options());
  ExpectHello(1);
  EXPECT_THAT(NoDelayOfSocketsConnectedTo(fake_.port()), ElementsAre(1));
}

TEST_P(ParticipantFakeTest, AbortPathDiscardsTheStagedEffects) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, Abort("7.1", 1));
  // The redelivery after the abort, in a new txn, commits.
  fake_.SendText(1, Prepare("7.2", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.2"), "yes");
  EXPECT_EQ(*resource_->Status("7.1"), TxnStatus::kAbsent);
  fake_.SendText(1, Commit("7.2", 1));
  ExpectDone(1, "7.2");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10)));
  EXPECT_EQ(participant_->stats().aborts, 1u);
}

TEST_P(ParticipantFakeTest, HandlerFailureAndExceptionVoteNo) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:1"), Payment(1, "fail")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "no");
  fake_.SendText(1, Prepare("7.2", 1, {Payment(2, "throw")}));
  EXPECT_EQ(ExpectVote(1, "7.2"), "no");
  // NO votes journal nothing; the coordinator's abort is a no-op.
  fake_.SendText(1, Abort("7.1", 1));
  fake_.SendText(1, Prepare("7.3", 1, {Payment(3, "bob:2")}));
  EXPECT_EQ(ExpectVote(1, "7.3"), "yes");
  EXPECT_THAT(*resource_->Recover(), ElementsAre("7.3"));
  EXPECT_EQ(participant_->stats().votes_no, 2u);
  EXPECT_EQ(participant_->stats().session_failures, 0u);
}

TEST_P(ParticipantFakeTest, DuplicateCommitAppliesOnceAndResendsDone) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10)));
  EXPECT_EQ(participant_->stats().duplicate_commits, 1u);
}

TEST_P(ParticipantFakeTest, PrepareOfAnAlreadyCommittedIdVotesYesWithNothingStaged) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  fake_.SendText(1, Prepare("7.2", 1, {Payment(0, "alice:10"), Payment(1, "alice:1")}));
  EXPECT_EQ(ExpectVote(1, "7.2"), "yes");
  int skipped = 0;
  ONCE_ASSERT_OK(resource_->WithDatabase([&skipped](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(const std::vector<StagedMessage> staged,
                          participant::LoadStaged(db, "7.2"));
    for (const StagedMessage& m : staged) skipped += m.skipped ? 1 : 0;
    return absl::OkStatus();
  }));
  EXPECT_EQ(skipped, 1);
  fake_.SendText(1, Commit("7.2", 1));
  ExpectDone(1, "7.2");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 11)));
  EXPECT_EQ(participant_->stats().messages_skipped, 1u);
}

TEST_P(ParticipantFakeTest, AnIdListedTwiceInOnePrepareIsStagedOnce) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(
      1, Prepare("7.1", 1, {Payment(0, "carol:3"), Payment(1, "carol:4"), Payment(0, "carol:3")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  std::vector<bool> skipped;
  ONCE_ASSERT_OK(resource_->WithDatabase([&skipped](sqlite::Database* db) -> absl::Status {
    ONCE_ASSIGN_OR_RETURN(const std::vector<StagedMessage> staged,
                          participant::LoadStaged(db, "7.1"));
    for (const StagedMessage& m : staged) skipped.push_back(m.skipped);
    return absl::OkStatus();
  }));
  EXPECT_THAT(skipped, ElementsAre(false, false, true));
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("carol", 7)));
}

TEST_P(ParticipantFakeTest, InDoubtTxnsAreResolvedByWelcomeAfterARestart) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, Prepare("7.2", 1, {Payment(1, "bob:5")}));
  EXPECT_EQ(ExpectVote(1, "7.2"), "yes");
  participant_->Stop();
  participant_.reset();
  EXPECT_TRUE(fake_.WaitClosed(1));

  // A new process (same journal): hello lists both; the coordinator has
  // the COMMIT record of 7.1 only.
  StartParticipant(Options());
  json::object hello = ExpectHello(2);
  std::vector<std::string> in_doubt;
  for (const json::value& v : hello.at("in_doubt").as_array()) {
    in_doubt.emplace_back(v.as_string());
  }
  EXPECT_THAT(in_doubt, ElementsAre("7.1", "7.2"));
  // (The abort comes first: the done of 7.1 then proves both were handled.)
  fake_.SendText(
      2, Welcome(2, {{"7.2", protocol::Outcome::kAbort}, {"7.1", protocol::Outcome::kCommit}}));
  ExpectDone(2, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10)));
  EXPECT_EQ(*resource_->Status("7.2"), TxnStatus::kAbsent);
  EXPECT_THAT(*resource_->Recover(), IsEmpty());
}

TEST_P(ParticipantFakeTest, InDoubtTxnIsReaskedOnATimer) {
  ParticipantOptions o = Options();
  o.reask_interval_ms = 20;
  StartParticipant(o);
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  // No decision comes: the participant asks again with its YES vote.
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, Commit("7.1", 1));
  ExpectDone(1, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10)));
}

TEST_P(ParticipantFakeTest, NoWelcomeInTimeEndsTheAttempt) {
  ParticipantOptions o = Options();
  o.connect_timeout_ms = 50;
  StartParticipant(o);
  ExpectHello(1);
  EXPECT_TRUE(fake_.WaitClosed(1));
  ExpectHello(2);
  EXPECT_THAT(participant_->stats().last_error, ::testing::HasSubstr("no welcome"));
}

TEST_P(ParticipantFakeTest, OversizedFrameEndsTheSessionWithoutApplyingIt) {
  ParticipantOptions o = Options();
  o.max_frame_bytes = 1024;
  StartParticipant(o);
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(
      1, Prepare("7.1", 1, {Payment(0, "alice:1"), Payment(1, "bob:" + std::string(4096, '1'))}));
  EXPECT_TRUE(fake_.WaitClosed(1));
  ExpectHello(2);
  EXPECT_EQ(*resource_->Status("7.1"), TxnStatus::kAbsent);
  EXPECT_THAT(Balances(), IsEmpty());
}

TEST_P(ParticipantFakeTest, ReconnectsAfterTheServerDrops) {
  StartParticipant(Options());
  ExpectHello(1);
  fake_.SendText(1, Welcome(1));
  fake_.SendText(1, Prepare("7.1", 1, {Payment(0, "alice:10")}));
  EXPECT_EQ(ExpectVote(1, "7.1"), "yes");
  fake_.SendText(1, "{\"type\":\"error\",\"code\":\"fenced\",\"message\":\"another hello\"}");
  EXPECT_TRUE(fake_.WaitClosed(1));
  json::object hello = ExpectHello(2);
  ASSERT_EQ(hello.at("in_doubt").as_array().size(), 1u);
  fake_.SendText(2, Welcome(2, {{"7.1", protocol::Outcome::kCommit}}));
  ExpectDone(2, "7.1");
  EXPECT_THAT(Balances(), ElementsAre(Pair("alice", 10)));
}

}  // namespace
// Each test runs with the WebSocket client on the SDK's thread and on a
// network thread of its own (ParticipantOptions::read_ahead).
INSTANTIATE_TEST_SUITE_P(Threads, ParticipantFakeTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "ReadAhead" : "OneThread");
                         });

}  // namespace once
