// Protocol-violating frames from the coordinator: each one must end the
// session (the participant closes the socket and reconnects with hello),
// apply nothing, never crash, and leave the journal able to finish the
// in-doubt transaction exactly once on the next session.
#include <chrono>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "schema/txn_protocol.h"
#include "tests/participant/fake_coordinator.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::Pair;

constexpr char kMessage[] = R"({"id":"payments/0/9","partition":0,"offset":9,"value":"carol:100"})";

struct Case {
  const char* name;
  bool welcome_first;  // send a valid welcome (epoch 7, generation 1) first
  bool binary;
  std::string frame;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string Frame(const std::string& body) { return "{" + body + "}"; }

std::vector<Case> Cases() {
  const std::string prepare_ok =
      std::string(R"("type":"prepare","txn":"7.3","epoch":7,"generation":1,"messages":[)") +
      kMessage + "]";
  return {
      {"malformed_json", true, false, R"({"type":"prepare","txn":"7.3",)"},
      {"not_an_object", true, false, "[1,2,3]"},
      {"unknown_type", true, false, Frame(R"("type":"bogus","txn":"7.2")")},
      {"no_type", true, false, Frame(R"("txn":"7.2","epoch":7,"generation":1)")},
      {"missing_txn", true, false,
       Frame(std::string(R"("type":"prepare","epoch":7,"generation":1,"messages":[)") + kMessage +
             "]")},
      {"wrong_type_epoch", true, false,
       Frame(R"("type":"commit","txn":"7.2","epoch":"7","generation":1)")},
      {"negative_generation", true, false,
       Frame(R"("type":"commit","txn":"7.2","epoch":7,"generation":-1)")},
      {"unknown_field", true, false,
       Frame(R"("type":"commit","txn":"7.2","epoch":7,"generation":1,"extra":true)")},
      {"empty_txn", true, false, Frame(R"("type":"commit","txn":"","epoch":7,"generation":1)")},
      {"bad_base64", true, false,
       Frame(R"("type":"prepare","txn":"7.3","epoch":7,"generation":1,"messages":[)"
             R"({"id":"payments/0/9","partition":0,"offset":9,"value_b64":"!!"}])")},
      {"prepare_before_welcome", false, false, Frame(prepare_ok)},
      {"commit_before_welcome", false, false,
       Frame(R"("type":"commit","txn":"7.2","epoch":7,"generation":1)")},
      {"commit_of_unknown_txn", true, false,
       Frame(R"("type":"commit","txn":"7.99","epoch":7,"generation":1)")},
      {"stale_epoch_prepare", true, false,
       Frame(std::string(R"("type":"prepare","txn":"7.3","epoch":6,"generation":1,"messages":[)") +
             kMessage + "]")},
      {"stale_generation_commit", true, false,
       Frame(R"("type":"commit","txn":"7.2","epoch":7,"generation":0)")},
      {"binary_frame", true, true, Frame(prepare_ok)},
      {"second_welcome", true, false,
       Frame(R"("type":"welcome","epoch":7,"generation":1,"resolutions":[])")},
      {"resolution_not_in_hello", false, false,
       Frame(R"("type":"welcome","epoch":7,"generation":1,"resolutions":[)"
             R"({"txn":"7.2","outcome":"commit"},{"txn":"7.99","outcome":"commit"}])")},
      {"bad_outcome", false, false,
       Frame(R"("type":"welcome","epoch":7,"generation":1,"resolutions":[)"
             R"({"txn":"7.2","outcome":"maybe"}])")},
      {"vote_from_coordinator", true, false,
       Frame(R"("type":"vote","txn":"7.2","epoch":7,"generation":1,"vote":"yes")")},
      {"hello_from_coordinator", true, false,
       Frame(R"("type":"hello","participant":"x","topic":"t","group":"g","in_doubt":[])")},
      {"abort_of_committed_txn", true, false,
       Frame(R"("type":"abort","txn":"7.1","epoch":7,"generation":1)")},
      {"error_frame", true, false, Frame(R"("type":"error","code":"fenced","message":"bye")")},
  };
}

class ParticipantViolationTest : public ::testing::TestWithParam<std::tuple<Case, bool>> {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_participant_violation", std::get<0>(GetParam()).name);
    ONCE_ASSERT_OK_AND_ASSIGN(resource_, testing::OpenLedger((dir_ / "ledger.db").string()));
    // Journal state before the session: 7.1 committed (alice:10), 7.2 in
    // doubt (bob:5).
    ONCE_ASSERT_OK(resource_->Prepare(Staged("7.1", "payments/0/1", "alice:10")));
    ONCE_ASSERT_OK(resource_->Commit("7.1").status());
    ONCE_ASSERT_OK(resource_->Prepare(Staged("7.2", "payments/0/2", "bob:5")));
  }
  void TearDown() override {
    participant_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  static PreparedTxn Staged(const std::string& txn, const std::string& id,
                            const std::string& value) {
    Message m;
    m.id = id;
    m.value = value;
    Staging s;
    EXPECT_TRUE(testing::LedgerHandler(m, s).ok());
    return PreparedTxn{txn, "payments", "ledger", 7, 1, {StagedMessage{id, false, s.Release()}}};
  }

  absl::StatusOr<std::string> NextType(int n) {
    ONCE_ASSIGN_OR_RETURN(json::object o, fake_.Receive(n));
    return std::string(o.at("type").as_string());
  }

  testing::FakeCoordinator fake_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> resource_;
  std::unique_ptr<Participant> participant_;
};

TEST_P(ParticipantViolationTest, FailsTheSessionReconnectsAndAppliesNothingTwice) {
  const Case& c = std::get<0>(GetParam());
  ParticipantOptions o;
  o.url = fake_.url();
  o.topic = "payments";
  o.group = "ledger";
  o.participant_id = "ledger-1";
  o.backoff_min_ms = 5;
  o.backoff_max_ms = 20;
  o.reask_interval_ms = 60'000;
  o.read_ahead = std::get<1>(GetParam());
  ONCE_ASSERT_OK_AND_ASSIGN(participant_,
                            Participant::Create(o, resource_.get(), testing::LedgerHandler));
  ONCE_ASSERT_OK(participant_->Start());

  ONCE_ASSERT_OK_AND_ASSIGN(json::object hello, fake_.Receive(1));
  ASSERT_EQ(hello.at("type").as_string(), "hello");
  ASSERT_EQ(hello.at("in_doubt").as_array().size(), 1u);
  if (c.welcome_first) {
    fake_.SendText(1, R"({"type":"welcome","epoch":7,"generation":1,"resolutions":[]})");
  }
  if (c.binary) {
    fake_.SendBinary(1, c.frame);
  } else {
    fake_.SendText(1, c.frame);
  }
  // The participant ends the session...
  ASSERT_TRUE(fake_.WaitClosed(1)) << c.name;
  // ... having answered nothing to the bad frame (no vote, no done) ...
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<std::string> type = NextType(1);
    if (!type.ok()) break;
    EXPECT_NE(*type, "vote") << c.name;
    EXPECT_NE(*type, "done") << c.name;
  }
  // ... and applied nothing.
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10)));
  EXPECT_EQ(*resource_->Status("7.2"), TxnStatus::kPrepared);
  EXPECT_EQ(*resource_->Status("7.3"), TxnStatus::kAbsent);

  // It comes back with hello and finishes 7.2 exactly once.
  ONCE_ASSERT_OK_AND_ASSIGN(json::object again, fake_.Receive(2));
  ASSERT_EQ(again.at("type").as_string(), "hello");
  ASSERT_EQ(again.at("in_doubt").as_array().size(), 1u);
  EXPECT_EQ(again.at("in_doubt").as_array()[0].as_string(), "7.2");
  fake_.SendText(2, R"({"type":"welcome","epoch":7,"generation":2,"resolutions":[)"
                    R"({"txn":"7.2","outcome":"commit"}]})");
  ONCE_ASSERT_OK_AND_ASSIGN(json::object done, fake_.ReceiveType(2, "done"));
  EXPECT_EQ(done.at("txn").as_string(), "7.2");
  // A re-sent commit of the old txn changes nothing.
  fake_.SendText(2, R"({"type":"commit","txn":"7.1","epoch":7,"generation":2})");
  ONCE_ASSERT_OK_AND_ASSIGN(done, fake_.ReceiveType(2, "done"));
  EXPECT_EQ(done.at("txn").as_string(), "7.1");
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10), Pair("bob", 5)));
  ONCE_EXPECT_OK(testing::CheckLedger(resource_.get()));
  const ParticipantStats s = participant_->stats();
  EXPECT_GE(s.session_failures, 1u);
  EXPECT_FALSE(s.last_error.empty());
}

// Each case with the WebSocket client on the SDK's thread and on a network
// thread of its own (ParticipantOptions::read_ahead).
INSTANTIATE_TEST_SUITE_P(Frames, ParticipantViolationTest,
                         ::testing::Combine(::testing::ValuesIn(Cases()), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<Case, bool>>& info) {
                           return std::string(std::get<0>(info.param).name) +
                                  (std::get<1>(info.param) ? "_ReadAhead" : "_OneThread");
                         });

}  // namespace
}  // namespace once
