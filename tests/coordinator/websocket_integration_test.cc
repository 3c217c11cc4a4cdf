// Integration tests of /v1/ws against a real onced: publishing, streaming
// with credits, acks, redelivery when a socket dies, errors, and a slow
// consumer that must not grow the server's memory.
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
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
using std::chrono::seconds;

using WebSocketTest = ServiceTest;

// The resident set of `pid` in KiB, from /proc.
int64_t ResidentKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kib = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits.push_back(c);
      }
      if (absl::SimpleAtoi(digits, &kib)) return kib;
    }
  }
  return -1;
}

TEST_F(WebSocketTest, PlainGetIsToldToUpgrade) {
  StartServer();
  json::value answer = Expect(426, "GET", "/v1/ws");
  EXPECT_EQ(answer.at("error").at("code").as_string(), "upgrade_required");
  WsTestClient wrong(server_->port());
  EXPECT_FALSE(wrong.Connect("/v1/elsewhere").ok());
}

TEST_F(WebSocketTest, PublishesAreAnsweredInOrderOnceDurable) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"partitions": 3})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  for (int i = 0; i < 5; ++i) {
    json::object frame = Frame(R"({"type": "publish", "topic": "t",
                                   "messages": [{"key": "k", "value": "v"}]})");
    frame["request"] = i;
    if (i == 2) frame["topic"] = "missing";  // its error keeps its place
    ONCE_ASSERT_OK(ws.Send(frame));
  }
  int64_t last_offset = -1;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<json::object> f = ws.Receive();
    ONCE_ASSERT_OK(f);
    EXPECT_EQ(f->at("request").as_int64(), i);
    if (i == 2) {
      EXPECT_EQ(f->at("type").as_string(), "error");
      EXPECT_EQ(f->at("code").as_string(), "topic_not_found");
      continue;
    }
    EXPECT_EQ(f->at("type").as_string(), "published");
    const int64_t offset = f->at("results").at(0).at("offset").as_int64();
    EXPECT_GT(offset, last_offset);  // same key, same partition: in order
    last_offset = offset;
  }
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t").at("messages").as_int64(), 4);
}

// Memory topics are published on the session's strand, disk topics on a
// worker: frames for both, sent without waiting, are still answered in
// frame order, each with its own topic's offsets.
TEST_F(WebSocketTest, PublishesToMemoryAndDiskTopicsKeepFrameOrder) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/disk", R"({"backend": "disk", "fsync": "always"})");
  Expect(201, "PUT", "/v1/topics/mem", R"({"backend": "memory"})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  constexpr int kFrames = 12;
  for (int i = 0; i < kFrames; ++i) {
    json::object frame = Frame(R"({"type": "publish", "messages": [{"value": "v"}]})");
    frame["request"] = i;
    frame["topic"] = i % 3 == 0 ? "disk" : "mem";
    ONCE_ASSERT_OK(ws.Send(frame));
  }
  int64_t next_disk = 0, next_mem = 0;
  for (int i = 0; i < kFrames; ++i) {
    json::object f = NextFrame(ws, "published");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(f.at("request").as_int64(), i);
    int64_t& next = i % 3 == 0 ? next_disk : next_mem;
    EXPECT_EQ(f.at("results").at(0).at("offset").as_int64(), next++) << json::serialize(f);
  }
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/disk").at("messages").as_int64(), kFrames / 3);
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/mem").at("messages").as_int64(), kFrames * 2 / 3);
}

TEST_F(WebSocketTest, SubscriptionNeverGetsMoreThanItsCredits) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  Expect(200, "POST", "/v1/topics/t/messages",
         R"({"messages": [{"value": "0"}, {"value": "1"}, {"value": "2"}, {"value": "3"},
                          {"value": "4"}]})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": 2})")));
  const int64_t sub = NextFrame(ws, "subscribed").at("subscription").as_int64();
  std::vector<std::string> tokens;
  for (int i = 0; i < 2; ++i) {
    json::object m = NextFrame(ws, "message");
    EXPECT_EQ(m.at("subscription").as_int64(), sub);
    EXPECT_EQ(m.at("delivery_count").as_int64(), 1);
    EXPECT_EQ(m.at("id").as_string(), absl::StrCat("t/0/", m.at("offset").as_int64()));
    tokens.emplace_back(m.at("delivery_token").as_string());
  }
  // Out of credits: nothing more comes.
  EXPECT_EQ(ws.Receive(milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded);
  json::object credit = Frame(R"({"type": "credit", "credits": 3})");
  credit["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(credit));
  for (int i = 0; i < 3; ++i) {
    tokens.emplace_back(NextFrame(ws, "message").at("delivery_token").as_string());
  }
  EXPECT_EQ(ws.Receive(milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded);

  json::object ack = Frame(R"({"type": "ack", "request": "a1"})");
  json::array t;
  for (const std::string& token : tokens) t.emplace_back(token);
  ack["tokens"] = t;
  ONCE_ASSERT_OK(ws.Send(ack));
  json::object acked = NextFrame(ws, "acked");
  EXPECT_EQ(acked.at("request").as_string(), "a1");
  EXPECT_EQ(acked.at("applied").as_int64(), 5);
  EXPECT_TRUE(acked.at("refused").as_array().empty());
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);

  // Acking again: refused as stale, said so.
  ONCE_ASSERT_OK(ws.Send(ack));
  json::object again = NextFrame(ws, "acked");
  EXPECT_EQ(again.at("applied").as_int64(), 0);
  EXPECT_EQ(again.at("refused").as_array().size(), 5u);
}

TEST_F(WebSocketTest, NewMessagesArePushedAsTheyArrive) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", "");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": 10})")));
  NextFrame(ws, "subscribed");
  EXPECT_EQ(ws.Receive(milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value_b64": "AAE="}]})");
  json::object m = NextFrame(ws, "message");
  EXPECT_EQ(m.at("value_b64").as_string(), "AAE=");
}

TEST_F(WebSocketTest, ADeadSocketReleasesItsDeliveriesForRedelivery) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", R"({"backoff_base_ms": 0})");
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "precious"}]})");
  {
    WsTestClient ws(server_->port());
    ONCE_ASSERT_OK(ws.Connect());
    ONCE_ASSERT_OK(ws.Send(Frame(
        R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "a", "credits": 1})")));
    NextFrame(ws, "subscribed");
    EXPECT_EQ(NextFrame(ws, "message").at("value").as_string(), "precious");
    ws.Abort();  // no ack, no close frame
  }
  // Long before the 30 s ack timeout, another consumer gets it again.
  const auto start = std::chrono::steady_clock::now();
  json::array again = Messages(
      Expect(200, "POST", "/v1/topics/t/groups/g/fetch", R"({"consumer": "b", "wait_ms": 10000})"));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].at("value").as_string(), "precious");
  EXPECT_EQ(again[0].at("delivery_count").as_int64(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(8));
}

TEST_F(WebSocketTest, BadFramesGetErrorsAndTheSocketStaysUsable) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/eo", R"({"guarantee": "exactly-once"})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  struct Case {
    std::string frame;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"not json", "malformed_json"},
      {"[1, 2]", "malformed_json"},
      {R"({"no": "type"})", "invalid_field"},
      {R"({"type": "dance"})", "unknown_frame_type"},
      {R"({"type": "subscribe", "topic": "t", "group": "nope", "consumer": "c"})",
       "group_not_found"},
      {R"({"type": "subscribe", "topic": "t", "group": "eo", "consumer": "c"})",
       "exactly_once_group"},
      {R"({"type": "subscribe", "topic": "t", "group": "g"})", "invalid_field"},
      {R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": -1})",
       "invalid_field"},
      {R"({"type": "credit", "subscription": 99, "credits": 1})", "subscription_not_found"},
      {R"({"type": "credit", "subscription": 1, "credits": 0})", "invalid_field"},
      {R"({"type": "ack", "tokens": ["x"]})", "invalid_field"},
      {R"({"type": "ack", "tokens": "x", "subscription": 1})", "invalid_field"},
      {R"({"type": "unsubscribe", "subscription": 5})", "subscription_not_found"},
      {R"({"type": "publish", "topic": "t", "messages": []})", "invalid_field"},
      {R"({"type": "publish", "topic": "t", "messages": [{"value": "a"}], "extra": 1})",
       "unknown_field"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.frame);
    ONCE_ASSERT_OK(ws.SendText(c.frame));
    json::object e = NextFrame(ws, "error");
    EXPECT_EQ(e.at("code").as_string(), c.code) << json::serialize(e);
    EXPECT_FALSE(e.at("message").as_string().empty());
  }
  ONCE_ASSERT_OK(ws.SendBinary("\x01\x02"));
  EXPECT_EQ(NextFrame(ws, "error").at("code").as_string(), "invalid_field");
  // Still serving.
  ONCE_ASSERT_OK(ws.Send(
      Frame(R"({"type": "publish", "request": 7, "topic": "t", "messages": [{"value": "ok"}]})")));
  EXPECT_EQ(NextFrame(ws, "published").at("request").as_int64(), 7);
  ONCE_EXPECT_OK(ws.Close());
  Expect(200, "GET", "/healthz");
}

TEST_F(WebSocketTest, NackRedeliversAndUnsubscribeReleases) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", R"({"backoff_base_ms": 0})");
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "a"}, {"value": "b"}]})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": 1})")));
  const int64_t sub = NextFrame(ws, "subscribed").at("subscription").as_int64();
  json::object first = NextFrame(ws, "message");
  json::object nack = Frame(R"({"type": "nack", "request": 1, "requeue": true})");
  nack["tokens"] = json::array({first.at("delivery_token")});
  nack["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(nack));
  EXPECT_EQ(NextFrame(ws, "acked").at("applied").as_int64(), 1);
  json::object credit = Frame(R"({"type": "credit", "credits": 1})");
  credit["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(credit));
  json::object second = NextFrame(ws, "message");  // "a" again or "b": either is fine
  json::object unsubscribe = Frame(R"({"type": "unsubscribe"})");
  unsubscribe["subscription"] = sub;
  ONCE_ASSERT_OK(ws.Send(unsubscribe));
  NextFrame(ws, "unsubscribed");
  // Both messages are available again to others: nothing stays leased.
  std::vector<std::string> values;
  for (int i = 0; i < 5 && values.size() < 2; ++i) {
    for (const json::value& m : Messages(Expect(200, "POST", "/v1/topics/t/groups/g/fetch",
                                                R"({"consumer": "d", "wait_ms": 3000})"))) {
      values.emplace_back(m.at("value").as_string());
    }
  }
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("a", "b"));
}

TEST_F(WebSocketTest, SlowConsumerDoesNotGrowServerMemory) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/big", R"({"backend": "disk", "fsync": "never"})");
  // A prefetch as large as the credits, so that only the server's own
  // bound can hold the deliveries back.
  Expect(201, "PUT", "/v1/topics/big/groups/g", R"({"prefetch": 100000})");
  // 48 MiB of messages, on disk.
  const std::string value(8192, 'x');
  const int kBatches = 12, kPerBatch = 500;
  for (int b = 0; b < kBatches; ++b) {
    json::array messages;
    for (int i = 0; i < kPerBatch; ++i) {
      json::object m;
      m["value"] = value;
      messages.push_back(std::move(m));
    }
    json::object body;
    body["messages"] = std::move(messages);
    Expect(200, "POST", "/v1/topics/big/messages", json::serialize(body));
  }
  const int64_t before = ResidentKiB(server_->pid());
  ASSERT_GT(before, 0);

  // A consumer that grants every credit it may and then reads nothing.
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "big", "group": "g", "consumer": "slow",
          "credits": 100000})")));
  // Let the server push what it will (bounded wait), then look.
  const std::string delivered = "once_delivered_messages_total{topic=\"big\",group=\"g\"}";
  double last = -1;
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    const double now = Metric(delivered);
    if (now == last && now > 0) break;  // it stopped: the queue is full
    last = now;
  }
  const int64_t after = ResidentKiB(server_->pid());
  const double pushed = Metric(delivered);
  // The write queue (4 MiB), one fetch batch and the socket buffers: far
  // less than the 48 MiB the consumer asked for.
  EXPECT_LT(pushed, kBatches * kPerBatch / 2) << "messages pushed to a consumer that reads nothing";
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine keeps freed memory resident
  EXPECT_LT(after - before, 40 * 1024) << "KiB of resident memory grown";
#else
  (void)after;
#endif
  ws.Abort();
  Expect(200, "GET", "/healthz");
}

TEST_F(WebSocketTest, SigtermClosesSocketsAndReleasesTheirDeliveries) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", "");
  Expect(201, "PUT", "/v1/topics/t/groups/g", R"({"backoff_base_ms": 0})");
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "held"}]})");
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.Send(Frame(
      R"({"type": "subscribe", "topic": "t", "group": "g", "consumer": "c", "credits": 1})")));
  NextFrame(ws, "subscribed");
  NextFrame(ws, "message");
  ONCE_ASSERT_OK(server_->Signal(SIGTERM));
  // The server says goodbye with a close frame.
  absl::StatusOr<json::object> end = ws.Receive(seconds(10));
  EXPECT_EQ(end.status().code(), absl::StatusCode::kUnavailable) << end.status();
  ONCE_ASSERT_OK_AND_ASSIGN(int code, server_->Wait(seconds(15)));
  EXPECT_EQ(code, 0);
  server_.reset();
  // After a restart the unacked message is there to be delivered again.
  StartServer();
  std::vector<std::string> values;
  for (int i = 0; i < 5 && values.empty(); ++i) {
    for (const json::value& m : Messages(Expect(200, "POST", "/v1/topics/t/groups/g/fetch",
                                                R"({"consumer": "d", "wait_ms": 3000})"))) {
      values.emplace_back(m.at("value").as_string());
    }
  }
  EXPECT_THAT(values, ::testing::ElementsAre("held"));
}

}  // namespace
}  // namespace once::testing
