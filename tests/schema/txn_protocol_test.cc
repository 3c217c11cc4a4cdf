#include "schema/txn_protocol.h"

#include <string>
#include <variant>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::protocol {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

template <typename T>
T RoundTrip(const T& frame) {
  std::string text = Encode(Frame(frame));
  absl::StatusOr<Frame> decoded = Decode(text);
  EXPECT_TRUE(decoded.ok()) << decoded.status() << " in " << text;
  if (!decoded.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*decoded)) << text;
  if (!std::holds_alternative<T>(*decoded)) return T{};
  return std::get<T>(*decoded);
}

TEST(TxnProtocolTest, HelloRoundTrips) {
  Hello h{.participant = "ledger-1",
          .topic = "payments",
          .group = "ledger",
          .in_doubt = {"3.17", "3.18"},
          .window = 4};
  Hello back = RoundTrip(h);
  EXPECT_EQ(back.participant, "ledger-1");
  EXPECT_EQ(back.topic, "payments");
  EXPECT_EQ(back.group, "ledger");
  EXPECT_THAT(back.in_doubt, ::testing::ElementsAre("3.17", "3.18"));
  EXPECT_EQ(back.window, 4u);
  EXPECT_EQ(back.version, kTxnProtocolVersion);
}

TEST(TxnProtocolTest, WelcomeRoundTrips) {
  Welcome w{.epoch = 7,
            .generation = 2,
            .resolutions = {{"6.1", Outcome::kCommit}, {"6.2", Outcome::kAbort}}};
  Welcome back = RoundTrip(w);
  EXPECT_EQ(back.epoch, 7u);
  EXPECT_EQ(back.generation, 2u);
  ASSERT_EQ(back.resolutions.size(), 2u);
  EXPECT_EQ(back.resolutions[0].txn, "6.1");
  EXPECT_EQ(back.resolutions[0].outcome, Outcome::kCommit);
  EXPECT_EQ(back.resolutions[1].outcome, Outcome::kAbort);
}

TEST(TxnProtocolTest, PrepareRoundTripsTextAndBinaryValues) {
  TxnMessage text{.id = MessageId("payments", 2, 41),
                  .partition = 2,
                  .offset = 41,
                  .key = "acct-1",
                  .headers = {{"h", "v"}},
                  .value = "{\"amount\":5}",
                  .delivery_count = 3,
                  .timestamp_ms = 1700000000000};
  TxnMessage bytes;
  bytes.id = "payments/0/9";
  bytes.offset = 9;
  bytes.value = std::string("\0\x01\xff", 3);
  bytes.binary = true;
  Prepare p{.txn = "7.1", .epoch = 7, .generation = 2, .messages = {text, bytes}};
  Prepare back = RoundTrip(p);
  EXPECT_EQ(back.txn, "7.1");
  EXPECT_EQ(back.epoch, 7u);
  EXPECT_EQ(back.generation, 2u);
  ASSERT_EQ(back.messages.size(), 2u);
  EXPECT_EQ(back.messages[0].id, "payments/2/41");
  EXPECT_EQ(back.messages[0].key, "acct-1");
  EXPECT_EQ(back.messages[0].headers.size(), 1u);
  EXPECT_EQ(back.messages[0].value, "{\"amount\":5}");
  EXPECT_FALSE(back.messages[0].binary);
  EXPECT_EQ(back.messages[0].delivery_count, 3u);
  EXPECT_EQ(back.messages[0].timestamp_ms, 1700000000000);
  EXPECT_EQ(back.messages[1].value, std::string("\0\x01\xff", 3));
  EXPECT_TRUE(back.messages[1].binary);
  EXPECT_FALSE(back.messages[1].key.has_value());
  EXPECT_THAT(Encode(Frame(p)), HasSubstr("\"value_b64\":\"AAH/\""));
}

TEST(TxnProtocolTest, VoteCommitAbortDoneErrorRoundTrip) {
  Vote no = RoundTrip(Vote{
      .txn = "1.1", .epoch = 1, .generation = 1, .yes = false, .reason = "insufficient funds"});
  EXPECT_FALSE(no.yes);
  EXPECT_EQ(no.reason, "insufficient funds");
  EXPECT_TRUE(
      RoundTrip(Vote{.txn = "1.2", .epoch = 1, .generation = 1, .yes = true, .reason = ""}).yes);
  EXPECT_EQ(RoundTrip(Commit{.txn = "1.3", .epoch = 1, .generation = 5}).generation, 5u);
  EXPECT_EQ(RoundTrip(Abort{.txn = "1.4", .epoch = 1, .generation = 1, .reason = "timeout"}).reason,
            "timeout");
  EXPECT_EQ(RoundTrip(Done{.txn = "1.5", .epoch = 2, .generation = 1}).epoch, 2u);
  Error e = RoundTrip(Error{.code = "fenced", .message = "newer session", .status = 409});
  EXPECT_EQ(e.code, "fenced");
  EXPECT_EQ(e.status, 409);
}

TEST(TxnProtocolTest, TypeNames) {
  EXPECT_EQ(TypeName(Frame(Hello{})), "hello");
  EXPECT_EQ(TypeName(Frame(Done{})), "done");
  EXPECT_TRUE(IsTxnFrameType("prepare"));
  EXPECT_FALSE(IsTxnFrameType("publish"));
}

TEST(TxnProtocolTest, RequestFieldIsAccepted) {
  EXPECT_TRUE(Decode(R"({"type":"done","txn":"1.1","epoch":1,"generation":1,"request":5})").ok());
}

// Each malformed frame is refused with a message naming what is wrong.
TEST(TxnProtocolTest, MalformedFramesAreRefused) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "malformed JSON"},
      {"{", "malformed JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"txn":"1.1"})", "\"type\""},
      {R"({"type":5})", "\"type\""},
      {R"({"type":"teleport"})", "unknown type"},
      {R"({"type":"hello","topic":"t","group":"g","in_doubt":[]})", "\"participant\""},
      {R"({"type":"hello","participant":"","topic":"t","group":"g","in_doubt":[]})", "1..255"},
      {R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[1]})", "strings"},
      {R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[],"window":0})",
       "window"},
      {R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[],"x":1})",
       "unknown field \"x\""},
      {R"({"type":"vote","txn":"1.1","epoch":1,"generation":1,"vote":"maybe"})", "\"vote\""},
      {R"({"type":"vote","txn":"1.1","epoch":-1,"generation":1,"vote":"yes"})", "epoch"},
      {R"({"type":"vote","txn":"","epoch":1,"generation":1,"vote":"yes"})", "empty"},
      {R"({"type":"commit","txn":"1.1","epoch":"1","generation":1})", "epoch"},
      {R"({"type":"done","txn":"1.1","epoch":1})", "generation"},
      {R"({"type":"prepare","txn":"1.1","epoch":1,"generation":1,"messages":[]})", "empty"},
      {R"({"type":"prepare","txn":"1.1","epoch":1,"generation":1,"messages":[1]})", "object"},
      {R"({"type":"prepare","txn":"1.1","epoch":1,"generation":1,"messages":[{"id":"a","partition":0,"offset":1}]})",
       "exactly one"},
      {R"({"type":"prepare","txn":"1.1","epoch":1,"generation":1,"messages":[{"id":"a","partition":0,"offset":1,"value_b64":"!!"}]})",
       "base64"},
      {R"({"type":"prepare","txn":"1.1","epoch":1,"generation":1,"messages":[{"id":"a","partition":5000,"offset":1,"value":""}]})",
       "partition"},
      {R"({"type":"welcome","epoch":1,"generation":1,"resolutions":[{"txn":"1.1","outcome":"maybe"}]})",
       "outcome"},
      {R"({"type":"error","code":"x"})", "\"message\""},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Decode(c.text), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

}  // namespace
}  // namespace once::protocol
