// Batched delivery on /v1/ws ("batch": true on subscribe: one "messages"
// frame per push) against a real onced: credits still bound what comes,
// every delivery can be acked, and a bad "batch" is refused.
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

using WebSocketBatchTest = ServiceTest;

// Reads "messages" frames until `n` deliveries came; their tokens, in order.
std::vector<std::string> ReceiveBatched(WsTestClient& ws, int64_t sub, size_t n) {
  std::vector<std::string> tokens;
  for (int frames = 0; tokens.size() < n && frames < 10; ++frames) {
    json::object f = NextFrame(ws, "messages");
    if (f.empty()) break;
    EXPECT_EQ(f.at("subscription").as_int64(), sub);
    const json::array& messages = f.at("messages").as_array();
    EXPECT_FALSE(messages.empty());
    for (const json::value& m : messages) {
      const json::object& o = m.as_object();
      EXPECT_EQ(o.at("id").as_string(), absl::StrCat("t/0/", o.at("offset").as_int64()));
      EXPECT_EQ(o.at("delivery_count").as_int64(), 1);
      EXPECT_EQ(o.at("value").as_string(), absl::StrCat("v", o.at("offset").as_int64()));
      EXPECT_FALSE(o.contains("type"));
      tokens.emplace_back(o.at("delivery_token").as_string());
    }
  }
  return tokens;
}

TEST_F(WebSocketBatchTest, BatchedPushesRespectCreditsAndAck) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Expect(200, "POST", "/v1/topics/t/messages",
         R"({"messages": [{"value": "v0"}, {"value": "v1"}, {"value": "v2"}, {"value": "v3"},
                          {"value": "v4"}]})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": 3,
          "batch": true})")));
  const int64_t sub = NextFrame(ws, "subscribed").at("subscription").as_int64();
  std::vector<std::string> tokens = ReceiveBatched(ws, sub, 3);
  EXPECT_EQ(tokens.size(), 3u);
  // Out of credits: nothing more comes.
  EXPECT_EQ(ws.Receive(milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded);
  json::object credit = Frame(R"({"type": "credit", "credits": 10})");
  credit["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(credit));
  for (std::string& t : ReceiveBatched(ws, sub, 2)) tokens.push_back(std::move(t));
  ASSERT_EQ(tokens.size(), 5u);
  EXPECT_EQ(ws.Receive(milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded);

  json::object ack = Frame(R"({"type": "ack", "request": "a1"})");
  json::array t;
  for (const std::string& token : tokens) t.emplace_back(token);
  ack["tokens"] = t;
  ONCE_ASSERT_OK(ws.Send(ack));
  json::object acked = NextFrame(ws, "acked");
  EXPECT_EQ(acked.at("applied").as_int64(), 5);
  EXPECT_TRUE(acked.at("refused").as_array().empty());
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);

  // Messages published now are pushed batched too.
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "v5"}]})");
  EXPECT_EQ(ReceiveBatched(ws, sub, 1).size(), 1u);
}

TEST_F(WebSocketBatchTest, NonBooleanBatchIsRefused) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "request": 7, "topic": "t", "group": "g", "consumer": "c",
          "credits": 3, "batch": "yes"})")));
  json::object error = NextFrame(ws, "error");
  EXPECT_EQ(error.at("code").as_string(), "invalid_field");
  EXPECT_EQ(error.at("request").as_int64(), 7);
  EXPECT_THAT(std::string(error.at("message").as_string()), ::testing::HasSubstr("batch"));
}

}  // namespace
}  // namespace once::testing
