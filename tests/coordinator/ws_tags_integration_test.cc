// Delivery tags on /v1/ws ("delivery_tags": true on subscribe: each
// delivery numbered per subscription, acked by number or by "up_to")
// against a real onced: tags count up from 1, acks by list and by up_to
// apply, refusals name the tag, nacks and a closed socket redeliver, and
// malformed tag acks are refused with the server still serving.
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/integration_fixture.h"
#include "tests/coordinator/ws_test_client.h"

namespace once::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

class WebSocketTagsTest : public ServiceTest {
 protected:
  // Publishes "v<from>" .. "v<to - 1>" to topic t.
  void Publish(int from, int to) {
    json::array messages;
    for (int i = from; i < to; ++i) {
      json::object m;
      m["value"] = absl::StrCat("v", i);
      messages.push_back(std::move(m));
    }
    json::object body;
    body["messages"] = std::move(messages);
    Expect(200, "POST", "/v1/topics/t/messages", json::serialize(body));
  }
};

// Subscribes to t/g with delivery tags; the subscription's id.
int64_t SubscribeWithTags(WsTestClient& ws, int credits, bool batch) {
  json::object sub = Frame(R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c",
                                "delivery_tags": true})");
  sub["credits"] = credits;
  sub["batch"] = batch;
  EXPECT_TRUE(ws.Send(sub).ok());
  json::object subscribed = NextFrame(ws, "subscribed");
  EXPECT_TRUE(subscribed.contains("delivery_tags")) << json::serialize(subscribed);
  return subscribed.empty() ? -1 : subscribed.at("subscription").as_int64();
}

// The next `n` deliveries ("message" frames, or "messages" frames when
// `batch`), as objects, in order.
std::vector<json::object> Deliveries(WsTestClient& ws, size_t n, bool batch) {
  std::vector<json::object> out;
  for (int frames = 0; out.size() < n && frames < 20; ++frames) {
    json::object f = NextFrame(ws, batch ? "messages" : "message");
    if (f.empty()) break;
    if (!batch) {
      out.push_back(f);
      continue;
    }
    for (const json::value& m : f.at("messages").as_array()) out.push_back(m.as_object());
  }
  return out;
}

// Sends an ack (or nack) frame built from `fields` with request "r" and
// returns the answer ("acked" or "error").
json::object Settle(WsTestClient& ws, const std::string& type, int64_t sub,
                    const std::string& fields) {
  json::object frame =
      Frame(absl::StrCat(R"({"type": ")", type, R"(", "request": "r", )", fields, "}"));
  frame["subscription"] = sub;
  EXPECT_TRUE(ws.Send(frame).ok());
  absl::StatusOr<json::object> answer = ws.Receive();
  EXPECT_TRUE(answer.ok()) << answer.status();
  return answer.ok() ? *answer : json::object();
}

TEST_F(WebSocketTagsTest, TagsCountUpAndAckByListAndUpTo) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Publish(0, 6);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  const int64_t sub = SubscribeWithTags(ws, 10, /*batch=*/false);
  std::vector<json::object> got = Deliveries(ws, 6, /*batch=*/false);
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].at("delivery_tag").as_int64(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(got[i].at("value").as_string(), absl::StrCat("v", i));
    EXPECT_FALSE(got[i].contains("delivery_token")) << json::serialize(got[i]);
  }

  json::object acked = Settle(ws, "ack", sub, R"("delivery_tags": [2, 3])");
  EXPECT_EQ(acked.at("type").as_string(), "acked") << json::serialize(acked);
  EXPECT_EQ(acked.at("applied").as_int64(), 2);
  EXPECT_TRUE(acked.at("refused").as_array().empty());
  // up_to 4 covers 1 and 4: 2 and 3 are no longer outstanding.
  acked = Settle(ws, "ack", sub, R"("up_to": 4)");
  EXPECT_EQ(acked.at("applied").as_int64(), 2) << json::serialize(acked);
  // Settled and never-delivered tags are refused, each by its tag; the
  // valid one beside them applies.
  acked = Settle(ws, "ack", sub, R"("delivery_tags": [3, 5, 99])");
  EXPECT_EQ(acked.at("applied").as_int64(), 1) << json::serialize(acked);
  const json::array& refused = acked.at("refused").as_array();
  ASSERT_EQ(refused.size(), 2u) << json::serialize(acked);
  EXPECT_EQ(refused[0].at("index").as_int64(), 0);
  EXPECT_EQ(refused[0].at("delivery_tag").as_int64(), 3);
  EXPECT_EQ(refused[0].at("reason").as_string(), "stale");
  EXPECT_EQ(refused[1].at("index").as_int64(), 2);
  EXPECT_EQ(refused[1].at("delivery_tag").as_int64(), 99);
  EXPECT_EQ(refused[1].at("reason").as_string(), "invalid");
  // One message (tag 6) left unacked.
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 1);
}

TEST_F(WebSocketTagsTest, NackRedeliversUnderTheNextTag) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "disk"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", R"({"mode": "shared"})");
  Publish(0, 2);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  const int64_t sub = SubscribeWithTags(ws, 10, /*batch=*/true);
  std::vector<json::object> got = Deliveries(ws, 2, /*batch=*/true);
  ASSERT_EQ(got.size(), 2u);
  json::object acked = Settle(ws, "nack", sub, R"("delivery_tags": [1], "requeue": true)");
  EXPECT_EQ(acked.at("applied").as_int64(), 1) << json::serialize(acked);
  std::vector<json::object> again = Deliveries(ws, 1, /*batch=*/true);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].at("delivery_tag").as_int64(), 3);
  EXPECT_EQ(again[0].at("delivery_count").as_int64(), 2);
  EXPECT_EQ(again[0].at("value").as_string(), "v0");
  acked = Settle(ws, "ack", sub, R"("up_to": 3)");
  EXPECT_EQ(acked.at("applied").as_int64(), 2) << json::serialize(acked);
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);
}

TEST_F(WebSocketTagsTest, ClosingTheSocketRedeliversWhatItsTagsHeld) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "disk"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Publish(0, 3);
  {
    WsTestClient ws(server_->port());
    ONCE_ASSERT_OK(ws.Connect());
    const int64_t sub = SubscribeWithTags(ws, 10, /*batch=*/true);
    ASSERT_EQ(Deliveries(ws, 3, /*batch=*/true).size(), 3u);
    EXPECT_EQ(Settle(ws, "ack", sub, R"("delivery_tags": [2])").at("applied").as_int64(), 1);
    ws.Abort();
  }
  // Another consumer, with tokens, gets the two left at once (released,
  // not waiting for their leases to expire).
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "d", "credits": 10})")));
  NextFrame(ws, "subscribed");
  std::vector<json::object> got = Deliveries(ws, 2, /*batch=*/false);
  ASSERT_EQ(got.size(), 2u);
  std::vector<std::string> values;
  for (const json::object& m : got) {
    values.emplace_back(m.at("value").as_string());
    EXPECT_EQ(m.at("delivery_count").as_int64(), 2);
    EXPECT_TRUE(m.contains("delivery_token"));
    EXPECT_FALSE(m.contains("delivery_tag"));
  }
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("v0", "v2"));
}

TEST_F(WebSocketTagsTest, MalformedTagAcksAreRefusedAndChangeNothing) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Publish(0, 2);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  const int64_t sub = SubscribeWithTags(ws, 10, /*batch=*/false);
  ASSERT_EQ(Deliveries(ws, 2, /*batch=*/false).size(), 2u);
  // A second subscription, with tokens.
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "e", "credits": 0})")));
  const int64_t token_sub = NextFrame(ws, "subscribed").at("subscription").as_int64();

  struct Case {
    std::string fields;
    int64_t subscription;  // -1: none
    std::string code, says;
  };
  const std::vector<Case> cases = {
      {R"("delivery_tags": [1], "tokens": ["x"])", sub, "invalid_field", "do not mix"},
      {R"("delivery_tags": [1], "up_to": 1)", sub, "invalid_field", "not both"},
      {R"("delivery_tags": [1])", -1, "invalid_field", "subscription"},
      {R"("delivery_tags": [1])", token_sub, "invalid_field", "delivers tokens"},
      {R"("delivery_tags": [1])", 77, "subscription_not_found", "77"},
      {R"("delivery_tags": 1)", sub, "invalid_field", "array"},
      {R"("delivery_tags": [])", sub, "invalid_field", "1 to"},
      {R"("delivery_tags": [0])", sub, "invalid_field", "positive"},
      {R"("delivery_tags": [-1])", sub, "invalid_field", "positive"},
      {R"("delivery_tags": ["1"])", sub, "invalid_field", "positive"},
      {R"("delivery_tags": [1.5])", sub, "invalid_field", "positive"},
      {R"("delivery_tags": [1, null])", sub, "invalid_field", "element 1"},
      {R"("up_to": 0)", sub, "invalid_field", "up_to"},
      {R"("up_to": 3)", sub, "invalid_field", "never delivered"},
      {R"("up_to": "2")", sub, "invalid_field", "up_to"},
      {R"("up_to": 18446744073709551615)", sub, "invalid_field", "up_to"},
      {R"("up_to": 1, "extra": true)", sub, "unknown_field", "extra"},
      {R"("up_to": 1, "requeue": false)", sub, "unknown_field", "requeue"},  // ack, not nack
  };
  for (const Case& c : cases) {
    json::object frame = Frame(absl::StrCat(R"({"type": "ack", "request": "r", )", c.fields, "}"));
    if (c.subscription >= 0) frame["subscription"] = c.subscription;
    ONCE_ASSERT_OK(ws.Send(frame));
    json::object error = NextFrame(ws, "error");
    EXPECT_EQ(error.at("code").as_string(), c.code) << c.fields;
    EXPECT_EQ(error.at("request").as_string(), "r") << c.fields;
    EXPECT_THAT(std::string(error.at("message").as_string()), HasSubstr(c.says)) << c.fields;
  }
  json::object frame = Frame(R"({"type": "nack", "request": "r", "up_to": 2, "requeue": 1})");
  frame["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(frame));
  EXPECT_EQ(NextFrame(ws, "error").at("code").as_string(), "invalid_field");
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "request": 5, "topic": "t", "group": "g", "consumer": "f",
          "delivery_tags": "yes"})")));
  EXPECT_THAT(std::string(NextFrame(ws, "error").at("message").as_string()),
              HasSubstr("delivery_tags"));

  // Nothing was settled by any of them: both tags still ack.
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 2);
  json::object acked = Settle(ws, "ack", sub, R"("up_to": 2)");
  EXPECT_EQ(acked.at("applied").as_int64(), 2) << json::serialize(acked);
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);
}

TEST_F(WebSocketTagsTest, RefusalsWithoutARequestComeAsAnErrorFrame) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Publish(0, 1);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  const int64_t sub = SubscribeWithTags(ws, 10, /*batch=*/false);
  ASSERT_EQ(Deliveries(ws, 1, /*batch=*/false).size(), 1u);
  json::object ack = Frame(R"({"type": "ack", "delivery_tags": [1]})");
  ack["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(ack));  // applies silently
  ONCE_ASSERT_OK(ws.Send(ack));  // tag 1 is settled now
  json::object error = NextFrame(ws, "error");
  EXPECT_EQ(error.at("code").as_string(), "stale_tokens") << json::serialize(error);
  EXPECT_EQ(error.at("applied").as_int64(), 0);
  EXPECT_EQ(error.at("refused").as_array().at(0).at("delivery_tag").as_int64(), 1);
  EXPECT_EQ(ws.Receive(milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace once::testing
