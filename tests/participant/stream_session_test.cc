// Idempotent and at-least-once consumption over the streaming frames
// (subscribe/subscribed/message/ack/nack/credit) against a fake server.
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "participant/src/stream_session.h"
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

std::string MessageFrame(uint64_t subscription, uint64_t offset, const std::string& value,
                         uint64_t tag) {
  return absl::StrCat(R"({"type":"message","subscription":)", subscription, R"(,"id":"payments/0/)",
                      offset, R"(","partition":0,"offset":)", offset,
                      R"(,"timestamp_ms":1795622170360,"value":")", value, R"(","delivery_tag":)",
                      tag, R"(,"delivery_count":1})");
}

// The tag an ack ("up_to") or a nack (its one "delivery_tags") names.
int64_t TagOf(const json::object& o) {
  if (o.contains("up_to")) return o.at("up_to").to_number<int64_t>();
  return o.at("delivery_tags").as_array().at(0).to_number<int64_t>();
}

class StreamSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_stream");
    ONCE_ASSERT_OK_AND_ASSIGN(resource_, testing::OpenLedger((dir_ / "ledger.db").string()));
  }
  void TearDown() override {
    participant_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start(Mode mode, Handler handler = testing::LedgerHandler, bool read_ahead = false) {
    ParticipantOptions o;
    o.read_ahead = read_ahead;
    o.url = fake_.url();
    o.topic = "payments";
    o.group = "ledger";
    o.participant_id = "worker-1";
    o.mode = mode;
    o.window = 8;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 20;
    ONCE_ASSERT_OK_AND_ASSIGN(participant_,
                              Participant::Create(o, resource_.get(), std::move(handler)));
    ONCE_ASSERT_OK(participant_->Start());
  }

  // Reads connection n's subscribe and answers subscribed (subscription s).
  void Subscribe(int n, uint64_t s) {
    auto sub = fake_.Receive(n);
    ASSERT_TRUE(sub.ok()) << sub.status();
    EXPECT_EQ(sub->at("type").as_string(), "subscribe");
    EXPECT_EQ(sub->at("consumer").as_string(), "worker-1");
    EXPECT_EQ(sub->at("credits").to_number<int64_t>(), 8);
    EXPECT_TRUE(sub->at("delivery_tags").as_bool());
    fake_.SendText(n, absl::StrCat(R"({"type":"subscribed","subscription":)", s,
                                   R"(,"topic":"payments","group":"ledger"})"));
  }

  testing::FakeCoordinator fake_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> resource_;
  std::unique_ptr<Participant> participant_;
};

TEST_F(StreamSessionTest, IdempotentAppliesADuplicateOnceAndAcksBoth) {
  Start(Mode::kIdempotent);
  Subscribe(1, 3);
  fake_.SendText(1, MessageFrame(3, 0, "alice:10", 1));
  // The credit goes back at once; the ack at the end of the burst.
  ONCE_ASSERT_OK_AND_ASSIGN(json::object credit, fake_.ReceiveType(1, "credit"));
  EXPECT_EQ(credit.at("credits").to_number<int64_t>(), 1);
  ONCE_ASSERT_OK_AND_ASSIGN(json::object ack, fake_.ReceiveType(1, "ack"));
  EXPECT_EQ(TagOf(ack), 1);
  EXPECT_EQ(ack.at("subscription").to_number<int64_t>(), 3);
  // The same message redelivered (a lease expired before the ack landed).
  fake_.SendText(1, MessageFrame(3, 0, "alice:10", 2));
  ONCE_ASSERT_OK_AND_ASSIGN(ack, fake_.ReceiveType(1, "ack"));
  EXPECT_EQ(TagOf(ack), 2);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 10)));
  ONCE_EXPECT_OK(testing::CheckLedger(resource_.get()));
  const ParticipantStats s = participant_->stats();
  EXPECT_EQ(s.acks, 2u);
  EXPECT_EQ(s.messages_applied, 1u);
  EXPECT_EQ(s.messages_skipped, 1u);
}

TEST_F(StreamSessionTest, IdempotentDuplicateAcrossAReconnectIsSkipped) {
  Start(Mode::kIdempotent);
  Subscribe(1, 1);
  fake_.SendText(1, MessageFrame(1, 4, "bob:2", 1));
  ONCE_ASSERT_OK(fake_.ReceiveType(1, "ack").status());
  fake_.SendText(1, "not json");
  ASSERT_TRUE(fake_.WaitClosed(1));
  Subscribe(2, 2);
  // The new subscription numbers its deliveries from 1 again.
  fake_.SendText(2, MessageFrame(2, 4, "bob:2", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(json::object ack, fake_.ReceiveType(2, "ack"));
  EXPECT_EQ(TagOf(ack), 1);
  EXPECT_EQ(ack.at("subscription").to_number<int64_t>(), 2);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("bob", 2)));
}

// A burst of messages through the real SDK loop: every tag is acked
// exactly once, in order, and every credit given back, however the acks
// were batched (at most 4 per frame with a window of 8).
class StreamBurstTest : public StreamSessionTest, public ::testing::WithParamInterface<bool> {};

// With the WebSocket client on the SDK's thread and on a network thread of
// its own (ParticipantOptions::read_ahead).
TEST_P(StreamBurstTest, ABurstIsAckedOnceAndCreditedInFull) {
  Start(Mode::kIdempotent, testing::LedgerHandler, /*read_ahead=*/GetParam());
  Subscribe(1, 3);
  constexpr int kMessages = 8;
  for (int i = 0; i < kMessages; ++i) {
    fake_.SendText(1, MessageFrame(3, i, "erin:1", i + 1));
  }
  int64_t acked_up_to = 0;
  int64_t credits = 0;
  for (int frames = 0; (acked_up_to < kMessages || credits < kMessages) && frames < 4 * kMessages;
       ++frames) {
    ONCE_ASSERT_OK_AND_ASSIGN(json::object f, fake_.Receive(1));
    if (f.at("type").as_string() == "ack") {
      const int64_t up_to = TagOf(f);
      EXPECT_GT(up_to, acked_up_to);
      EXPECT_LE(up_to - acked_up_to, 4);
      acked_up_to = up_to;
    } else if (f.at("type").as_string() == "credit") {
      credits += f.at("credits").to_number<int64_t>();
    }
  }
  EXPECT_EQ(acked_up_to, kMessages);
  EXPECT_EQ(credits, kMessages);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("erin", kMessages)));
}

INSTANTIATE_TEST_SUITE_P(Threads, StreamBurstTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "ReadAhead" : "OneThread");
                         });

TEST_F(StreamSessionTest, HandlerFailureNacksWithRequeue) {
  Start(Mode::kIdempotent);
  Subscribe(1, 1);
  fake_.SendText(1, MessageFrame(1, 0, "fail", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(json::object nack, fake_.ReceiveType(1, "nack"));
  EXPECT_EQ(TagOf(nack), 1);
  EXPECT_TRUE(nack.at("requeue").as_bool());
  EXPECT_FALSE(*resource_->IsCommitted("payments/0/0"));
  EXPECT_EQ(participant_->stats().nacks, 1u);
}

// Stages only the balance update (no payments row keyed by the id, which
// a second delivery would violate).
absl::Status BalanceOnly(const Message& m, Staging& staging) {
  staging.Add(
      "INSERT INTO accounts (account, balance) VALUES ('alice', ?1) "
      "ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
      {static_cast<int64_t>(m.value.size())});
  return absl::OkStatus();
}

TEST_F(StreamSessionTest, AtLeastOnceAppliesEachDelivery) {
  Start(Mode::kAtLeastOnce, BalanceOnly);
  Subscribe(1, 1);
  fake_.SendText(1, MessageFrame(1, 0, "x", 1));
  ONCE_ASSERT_OK(fake_.ReceiveType(1, "ack").status());
  fake_.SendText(1, MessageFrame(1, 0, "x", 2));
  ONCE_ASSERT_OK(fake_.ReceiveType(1, "ack").status());
  // At least once means it: a redelivery applies again, and no id is kept.
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 2)));
  EXPECT_FALSE(*resource_->IsCommitted("payments/0/0"));
}

TEST_F(StreamSessionTest, EffectThatFailsToApplyIsNackedAndTheSessionGoesOn) {
  Start(Mode::kAtLeastOnce);
  Subscribe(1, 1);
  fake_.SendText(1, MessageFrame(1, 0, "alice:1", 1));
  ONCE_ASSERT_OK(fake_.ReceiveType(1, "ack").status());
  // The ledger's payments row is keyed by the message id: a redelivery in
  // at-least-once mode violates it; the SDK nacks and keeps the session.
  fake_.SendText(1, MessageFrame(1, 0, "alice:1", 2));
  ONCE_ASSERT_OK_AND_ASSIGN(json::object nack, fake_.ReceiveType(1, "nack"));
  EXPECT_EQ(TagOf(nack), 2);
  EXPECT_THAT(participant_->stats().last_error, ::testing::HasSubstr("UNIQUE"));
  EXPECT_EQ(participant_->stats().session_failures, 0u);
}

TEST_F(StreamSessionTest, StaleTokenErrorKeepsTheSession) {
  Start(Mode::kIdempotent);
  Subscribe(1, 1);
  fake_.SendText(1, R"({"type":"error","code":"stale_tokens","message":"x","status":409})");
  fake_.SendText(1, MessageFrame(1, 0, "alice:1", 1));
  ONCE_ASSERT_OK(fake_.ReceiveType(1, "ack").status());
  EXPECT_EQ(participant_->stats().session_failures, 0u);
}

struct StreamCase {
  const char* name;
  bool subscribe_first;
  bool binary;
  std::string frame;
};

void PrintTo(const StreamCase& c, std::ostream* os) { *os << c.name; }

class StreamViolationTest : public StreamSessionTest,
                            public ::testing::WithParamInterface<StreamCase> {};

TEST_P(StreamViolationTest, FailsTheSessionAndAppliesNothing) {
  const StreamCase& c = GetParam();
  Start(Mode::kIdempotent);
  if (c.subscribe_first) {
    Subscribe(1, 1);
  } else {
    ONCE_ASSERT_OK(fake_.Receive(1).status());
  }
  if (c.binary) {
    fake_.SendBinary(1, c.frame);
  } else {
    fake_.SendText(1, c.frame);
  }
  ASSERT_TRUE(fake_.WaitClosed(1)) << c.name;
  EXPECT_THAT(*testing::Balances(resource_.get()), IsEmpty());
  ONCE_ASSERT_OK_AND_ASSIGN(json::object sub, fake_.Receive(2));
  EXPECT_EQ(sub.at("type").as_string(), "subscribe");
}

INSTANTIATE_TEST_SUITE_P(
    Frames, StreamViolationTest,
    ::testing::Values(
        StreamCase{"malformed_json", true, false, "{\"type\":"},
        StreamCase{"message_before_subscribed", false, false, MessageFrame(1, 0, "a:1", 1)},
        StreamCase{"other_subscription", true, false, MessageFrame(2, 0, "a:1", 1)},
        StreamCase{"missing_tag", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":0,"value":"a:1"})"},
        StreamCase{"token_instead_of_tag", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":0,"value":"a:1","delivery_token":"t"})"},
        StreamCase{"zero_tag", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":0,"value":"a:1","delivery_tag":0})"},
        StreamCase{"string_tag", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":0,"value":"a:1","delivery_tag":"1"})"},
        StreamCase{"wrong_type_offset", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":"0","value":"a:1","delivery_tag":1})"},
        StreamCase{"both_values", true, false,
                   R"({"type":"message","subscription":1,"id":"p/0/0","partition":0,)"
                   R"("offset":0,"value":"a:1","value_b64":"YQ==","delivery_tag":1})"},
        StreamCase{"unknown_type", true, false, R"({"type":"prepare"})"},
        StreamCase{"binary_frame", true, true, MessageFrame(1, 0, "a:1", 1)},
        StreamCase{"subscription_error", true, false,
                   R"({"type":"error","code":"group_not_found","message":"gone",)"
                   R"("subscription":1})"}),
    [](const ::testing::TestParamInfo<StreamCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace once
