// An exactly-once group's own batching settings (txn_batch_max,
// txn_linger_ms) against a real onced: create and describe over HTTP,
// malformed values refused with 400 and the JSON error body, and a
// scripted participant (schema/txn_protocol.h frames over /v1/ws) that
// never receives a PREPARE bigger than the group's txn_batch_max.
#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "schema/txn_protocol.h"
#include "tests/coordinator/integration_fixture.h"
#include "tests/coordinator/ws_test_client.h"

namespace once::testing {
namespace {

namespace json = boost::json;

class TxnGroupSettingsTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    StartServer();
    Expect(201, "PUT", "/v1/topics/t", R"({"partitions": 2, "backend": "disk"})");
  }

  void Publish(int n) {
    json::array list;
    for (int i = 0; i < n; ++i) {
      json::object m;
      m["value"] = absl::StrCat("m", published_++);
      list.push_back(m);
    }
    json::object body;
    body["messages"] = list;
    Expect(200, "POST", "/v1/topics/t/messages", json::serialize(body));
  }

  // The next frame, decoded; an error frame or a decode failure fails the
  // test (nullopt).
  std::optional<protocol::Frame> Next(WsTestClient& ws) {
    absl::StatusOr<json::object> o = ws.Receive();
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) return std::nullopt;
    absl::StatusOr<protocol::Frame> f = protocol::FromJson(*o);
    EXPECT_TRUE(f.ok()) << f.status() << " in " << json::serialize(*o);
    if (!f.ok()) return std::nullopt;
    return *f;
  }

  protocol::Welcome Hello(WsTestClient& ws, uint32_t window) {
    protocol::Hello h;
    h.participant = "p1";
    h.topic = "t";
    h.group = "g";
    h.window = window;
    EXPECT_TRUE(ws.SendText(protocol::Encode(h)).ok());
    std::optional<protocol::Frame> f = Next(ws);
    if (!f.has_value() || !std::holds_alternative<protocol::Welcome>(*f)) {
      ADD_FAILURE() << "expected a welcome";
      return {};
    }
    return std::get<protocol::Welcome>(*f);
  }

  // The error body of a refused group creation: its code.
  std::string RefusedCode(absl::string_view body) {
    json::value answer = Expect(400, "PUT", "/v1/topics/t/groups/bad", body);
    if (!answer.is_object() || !answer.as_object().contains("error")) {
      ADD_FAILURE() << "no JSON error body for " << body;
      return "";
    }
    const json::object& error = answer.at("error").as_object();
    EXPECT_TRUE(error.contains("message")) << body;
    return std::string(error.at("code").as_string());
  }

  int published_ = 0;
};

TEST_F(TxnGroupSettingsTest, CreateAndDescribeShowTheSettings) {
  json::value created =
      Expect(201, "PUT", "/v1/topics/t/groups/g",
             R"({"guarantee": "exactly-once", "txn_batch_max": 3, "txn_linger_ms": 20})");
  EXPECT_EQ(created.at("config").at("txn_batch_max").as_int64(), 3);
  EXPECT_EQ(created.at("config").at("txn_linger_ms").as_int64(), 20);
  json::value described = Expect(200, "GET", "/v1/topics/t/groups/g");
  EXPECT_EQ(described.at("config").at("txn_batch_max").as_int64(), 3);
  EXPECT_EQ(described.at("config").at("txn_linger_ms").as_int64(), 20);
  // The same settings again: 200; other ones: 409 naming the setting.
  Expect(200, "PUT", "/v1/topics/t/groups/g",
         R"({"guarantee": "exactly-once", "txn_batch_max": 3, "txn_linger_ms": 20})");
  json::value conflict =
      Expect(409, "PUT", "/v1/topics/t/groups/g",
             R"({"guarantee": "exactly-once", "txn_batch_max": 4, "txn_linger_ms": 20})");
  EXPECT_NE(std::string(conflict.at("error").at("message").as_string()).find("txn_batch_max"),
            std::string::npos)
      << json::serialize(conflict);

  // Unset: null (the service's defaults apply); other guarantees: absent.
  json::value unset =
      Expect(201, "PUT", "/v1/topics/t/groups/u", R"({"guarantee": "exactly-once"})");
  EXPECT_TRUE(unset.at("config").at("txn_batch_max").is_null());
  EXPECT_TRUE(unset.at("config").at("txn_linger_ms").is_null());
  json::value plain = Expect(201, "PUT", "/v1/topics/t/groups/plain", "{}");
  EXPECT_FALSE(plain.at("config").as_object().contains("txn_batch_max"));

  // They survive a restart (groups.db).
  StopServer();
  StartServer();
  described = Expect(200, "GET", "/v1/topics/t/groups/g");
  EXPECT_EQ(described.at("config").at("txn_batch_max").as_int64(), 3);
  EXPECT_EQ(described.at("config").at("txn_linger_ms").as_int64(), 20);
}

TEST_F(TxnGroupSettingsTest, MalformedValuesAreRefusedWith400) {
  for (const char* body : {
           R"({"guarantee": "exactly-once", "txn_batch_max": 0})",
           R"({"guarantee": "exactly-once", "txn_batch_max": 10001})",
           R"({"guarantee": "exactly-once", "txn_batch_max": "ten"})",
           R"({"guarantee": "exactly-once", "txn_batch_max": 2.5})",
           R"({"guarantee": "exactly-once", "txn_linger_ms": -1})",
           R"({"guarantee": "exactly-once", "txn_linger_ms": 1001})",
           R"({"guarantee": "exactly-once", "txn_linger_ms": true})",
           R"({"guarantee": "exactly-once", "ack_timeout_ms": 50, "txn_linger_ms": 50})",
           R"({"guarantee": "at-least-once", "txn_batch_max": 10})",
           R"({"guarantee": "idempotent", "txn_linger_ms": 0})",
           R"({"txn_batch_max": 10})",
       }) {
    SCOPED_TRACE(body);
    EXPECT_EQ(RefusedCode(body), "invalid_field");
  }
  Expect(404, "GET", "/v1/topics/t/groups/bad");
}

TEST_F(TxnGroupSettingsTest, PreparesNeverExceedTheGroupsBatchMax) {
  Expect(201, "PUT", "/v1/topics/t/groups/g",
         R"({"guarantee": "exactly-once", "txn_batch_max": 3, "backoff_base_ms": 0})");
  constexpr int kMessages = 20;
  Publish(kMessages);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws, /*window=*/4);
  int received = 0;
  size_t largest = 0;
  // Each frame is a PREPARE (voted yes), a COMMIT (answered done) or
  // something unexpected; bounded by the count and the client's timeout.
  for (int frames = 0; received < kMessages && frames < 4 * kMessages; ++frames) {
    std::optional<protocol::Frame> f = Next(ws);
    ASSERT_TRUE(f.has_value());
    if (const auto* p = std::get_if<protocol::Prepare>(&*f)) {
      EXPECT_LE(p->messages.size(), 3u) << "txn " << p->txn;
      EXPECT_FALSE(p->messages.empty());
      largest = std::max(largest, p->messages.size());
      received += static_cast<int>(p->messages.size());
      ASSERT_TRUE(
          ws.SendText(protocol::Encode(protocol::Vote{p->txn, w.epoch, w.generation, true, ""}))
              .ok());
    } else if (const auto* c = std::get_if<protocol::Commit>(&*f)) {
      ASSERT_TRUE(
          ws.SendText(protocol::Encode(protocol::Done{c->txn, w.epoch, w.generation})).ok());
    } else {
      FAIL() << "unexpected frame " << protocol::Encode(*f);
    }
  }
  EXPECT_EQ(received, kMessages);
  EXPECT_EQ(largest, 3u);  // the batch did fill up to the limit
}

TEST_F(TxnGroupSettingsTest, LingerCollectsMessagesPublishedAfterTheHello) {
  Expect(201, "PUT", "/v1/topics/t/groups/g",
         R"({"guarantee": "exactly-once", "txn_batch_max": 4, "txn_linger_ms": 1000})");
  Publish(2);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  Hello(ws, /*window=*/1);
  // The two published before lingered (well under a second passes here):
  // the next two fill the batch, and one PREPARE carries all four.
  Publish(2);
  std::optional<protocol::Frame> f = Next(ws);
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE(std::holds_alternative<protocol::Prepare>(*f)) << protocol::Encode(*f);
  EXPECT_EQ(std::get<protocol::Prepare>(*f).messages.size(), 4u);
}

}  // namespace
}  // namespace once::testing
