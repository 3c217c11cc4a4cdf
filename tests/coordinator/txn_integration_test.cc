// Exactly-once delivery end to end: a real onced and a scripted
// participant speaking the participant-session frames over /v1/ws
// (encoded and decoded with schema/txn_protocol.h, as the SDK does).
#include <signal.h>

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "schema/txn_protocol.h"
#include "tests/coordinator/integration_fixture.h"
#include "tests/coordinator/ws_test_client.h"

namespace once::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

class TxnIntegrationTest : public ServiceTest {
 protected:
  void SetUpTopic(int messages) {
    Expect(201, "PUT", "/v1/topics/t", R"({"partitions": 1, "backend": "disk"})");
    Expect(201, "PUT", "/v1/topics/t/groups/g",
           R"({"guarantee": "exactly-once", "backoff_base_ms": 0, "ack_timeout_ms": 60000})");
    if (messages == 0) return;
    json::array list;
    for (int i = 0; i < messages; ++i) {
      json::object m;
      m["value"] = absl::StrCat("m", i);
      list.push_back(m);
    }
    json::object body;
    body["messages"] = list;
    Expect(200, "POST", "/v1/topics/t/messages", json::serialize(body));
  }

  // The next participant frame of type T (at most 20 frames, each within
  // the client's timeout); fails the test on anything else.
  template <typename T>
  T Next(WsTestClient& ws) {
    for (int i = 0; i < 20; ++i) {
      absl::StatusOr<json::object> o = ws.Receive();
      EXPECT_TRUE(o.ok()) << o.status();
      if (!o.ok()) return T{};
      absl::StatusOr<protocol::Frame> f = protocol::FromJson(*o);
      EXPECT_TRUE(f.ok()) << f.status() << " in " << json::serialize(*o);
      if (!f.ok()) return T{};
      if (std::holds_alternative<T>(*f)) return std::get<T>(*f);
      ADD_FAILURE() << "unexpected frame " << json::serialize(*o);
      return T{};
    }
    return T{};
  }

  protocol::Welcome Hello(WsTestClient& ws, std::vector<std::string> in_doubt = {}) {
    protocol::Hello h;
    h.participant = "p1";
    h.topic = "t";
    h.group = "g";
    h.in_doubt = std::move(in_doubt);
    EXPECT_TRUE(ws.SendText(protocol::Encode(h)).ok());
    return Next<protocol::Welcome>(ws);
  }

  void Send(WsTestClient& ws, const protocol::Frame& frame) {
    EXPECT_TRUE(ws.SendText(protocol::Encode(frame)).ok());
  }

  // Waits (bounded) until the group has acked `n` messages.
  bool WaitAcked(int64_t n) {
    for (int i = 0; i < 500; ++i) {
      json::value g = Expect(200, "GET", "/v1/topics/t/groups/g");
      if (g.is_object() && g.at("acked").as_int64() == n) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
};

TEST_F(TxnIntegrationTest, CommitPathDeletesTheMessages) {
  StartServer();
  SetUpTopic(2);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws);
  EXPECT_EQ(w.epoch, 1u);
  protocol::Prepare p = Next<protocol::Prepare>(ws);
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[0].id, "t/0/0");
  EXPECT_EQ(p.messages[1].value, "m1");
  Send(ws, protocol::Vote{p.txn, w.epoch, w.generation, true, ""});
  protocol::Commit c = Next<protocol::Commit>(ws);
  EXPECT_EQ(c.txn, p.txn);
  json::value t = Expect(200, "GET", "/v1/transactions/" + p.txn);
  EXPECT_EQ(t.at("state").as_string(), "committed");
  Send(ws, protocol::Done{p.txn, w.epoch, w.generation});
  ASSERT_TRUE(WaitAcked(2));
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);
  EXPECT_TRUE(WaitForMetric("once_txn_done_total", 1));
  t = Expect(200, "GET", "/v1/transactions/" + p.txn);
  EXPECT_EQ(t.at("state").as_string(), "done");
  // Nothing more to deliver.
  EXPECT_EQ(ws.Receive(milliseconds(300)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(TxnIntegrationTest, VoteNoRedeliversWithDeliveryCountPlusOne) {
  StartServer();
  SetUpTopic(1);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws);
  protocol::Prepare p = Next<protocol::Prepare>(ws);
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].delivery_count, 1u);
  Send(ws, protocol::Vote{p.txn, w.epoch, w.generation, false, "handler failed"});
  protocol::Abort a = Next<protocol::Abort>(ws);
  EXPECT_EQ(a.txn, p.txn);
  protocol::Prepare again = Next<protocol::Prepare>(ws);
  EXPECT_NE(again.txn, p.txn);
  ASSERT_EQ(again.messages.size(), 1u);
  EXPECT_EQ(again.messages[0].id, "t/0/0");
  EXPECT_EQ(again.messages[0].delivery_count, 2u);
}

TEST_F(TxnIntegrationTest, FetchingAnExactlyOnceGroupOverHttpIsRefused) {
  StartServer();
  SetUpTopic(1);
  json::value answer =
      Expect(409, "POST", "/v1/topics/t/groups/g/fetch", R"({"consumer": "c1", "max": 1})");
  EXPECT_TRUE(answer.is_object() && answer.as_object().contains("error"));
}

TEST_F(TxnIntegrationTest, OrderedExactlyOnceGroupsAreRefusedAtCreation) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"partitions": 1})");
  json::value answer = Expect(400, "PUT", "/v1/topics/t/groups/o",
                              R"({"mode": "ordered", "guarantee": "exactly-once"})");
  EXPECT_EQ(answer.at("error").at("code").as_string(), "invalid_field");
}

TEST_F(TxnIntegrationTest, KillAfterTheDecisionNeverDeliversAgainAndResendsCommit) {
  StartServer();
  SetUpTopic(3);
  std::string txn;
  {
    WsTestClient ws(server_->port());
    ONCE_ASSERT_OK(ws.Connect());
    protocol::Welcome w = Hello(ws);
    protocol::Prepare p = Next<protocol::Prepare>(ws);
    ASSERT_EQ(p.messages.size(), 3u);
    txn = p.txn;
    Send(ws, protocol::Vote{p.txn, w.epoch, w.generation, true, ""});
    EXPECT_EQ(Next<protocol::Commit>(ws).txn, txn);
    // No DONE: onced dies after the commit point.
    ONCE_ASSERT_OK(server_->Signal(SIGKILL));
    ONCE_ASSERT_OK_AND_ASSIGN(int code, server_->Wait(std::chrono::seconds(20)));
    EXPECT_EQ(code, 128 + SIGKILL);
    server_.reset();
    ws.Abort();
  }
  StartServer();  // recovery runs before /readyz answers 200
  json::value list = Expect(200, "GET", "/v1/transactions?state=committed");
  ASSERT_EQ(list.at("transactions").as_array().size(), 1u);
  EXPECT_EQ(list.at("transactions").at(0).at("txn").as_string(), txn);
  EXPECT_TRUE(list.at("transactions").at(0).at("broker_deleted").as_bool());
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/t/groups/g").at("lag").as_int64(), 0);

  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws, {txn});
  EXPECT_EQ(w.epoch, 2u);
  ASSERT_EQ(w.resolutions.size(), 1u);
  EXPECT_EQ(w.resolutions[0].txn, txn);
  EXPECT_EQ(w.resolutions[0].outcome, protocol::Outcome::kCommit);
  Send(ws, protocol::Done{txn, w.epoch, w.generation});
  EXPECT_TRUE(WaitForMetric("once_txn_done_total", 1));
  EXPECT_EQ(Expect(200, "GET", "/v1/transactions/" + txn).at("state").as_string(), "done");
  // The batch is never delivered again (no PREPARE), and no COMMIT is
  // re-sent once DONE arrived.
  absl::StatusOr<json::object> more = ws.Receive(milliseconds(500));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kDeadlineExceeded)
      << (more.ok() ? json::serialize(*more) : "");
}

TEST_F(TxnIntegrationTest, CommitIsResentToAReconnectThatDoesNotListIt) {
  StartServer();
  SetUpTopic(1);
  std::string txn;
  {
    WsTestClient ws(server_->port());
    ONCE_ASSERT_OK(ws.Connect());
    protocol::Welcome w = Hello(ws);
    protocol::Prepare p = Next<protocol::Prepare>(ws);
    txn = p.txn;
    Send(ws, protocol::Vote{p.txn, w.epoch, w.generation, true, ""});
    EXPECT_EQ(Next<protocol::Commit>(ws).txn, txn);
    ws.Abort();
  }
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws);
  EXPECT_EQ(w.generation, 2u);
  protocol::Commit c = Next<protocol::Commit>(ws);
  EXPECT_EQ(c.txn, txn);
  EXPECT_EQ(c.generation, 2u);
  Send(ws, protocol::Done{txn, w.epoch, w.generation});
  ASSERT_TRUE(WaitAcked(1));
}

TEST_F(TxnIntegrationTest, OperatorRoutes) {
  StartServer({"--txn-vote-timeout-ms", "60000"});
  SetUpTopic(1);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  protocol::Welcome w = Hello(ws);
  protocol::Prepare p = Next<protocol::Prepare>(ws);
  json::value list = Expect(200, "GET", "/v1/transactions?state=preparing");
  ASSERT_EQ(list.at("transactions").as_array().size(), 1u);
  Expect(400, "GET", "/v1/transactions?state=bogus");
  Expect(400, "GET", "/v1/transactions?color=red");
  Expect(404, "GET", "/v1/transactions/9.9");
  Expect(400, "POST", "/v1/transactions/" + p.txn + "/abort", "{}");
  Expect(400, "POST", "/v1/transactions/" + p.txn + "/abort", "not json");
  json::value refused = Expect(409, "POST", "/v1/transactions/" + p.txn + "/commit",
                               R"({"reason": "operator thinks so"})");
  EXPECT_EQ(refused.at("error").at("code").as_string(), "transaction_state");
  Expect(200, "POST", "/v1/transactions/" + p.txn + "/abort", R"({"reason": "stuck handler"})");
  protocol::Abort a = Next<protocol::Abort>(ws);
  EXPECT_EQ(a.txn, p.txn);
  Expect(404, "POST", "/v1/transactions/" + p.txn + "/abort", R"({"reason": "again"})");
  // The redelivery, committed: past the commit point neither outcome is
  // forced.
  protocol::Prepare p2 = Next<protocol::Prepare>(ws);
  Send(ws, protocol::Vote{p2.txn, w.epoch, w.generation, true, ""});
  EXPECT_EQ(Next<protocol::Commit>(ws).txn, p2.txn);
  Expect(409, "POST", "/v1/transactions/" + p2.txn + "/abort", R"({"reason": "too late"})");
}

TEST_F(TxnIntegrationTest, MalformedParticipantFramesGetErrors) {
  StartServer();
  SetUpTopic(0);
  WsTestClient ws(server_->port());
  ONCE_ASSERT_OK(ws.Connect());
  ONCE_ASSERT_OK(ws.SendText(R"({"type": "vote", "txn": 5})"));
  protocol::Error e = Next<protocol::Error>(ws);
  EXPECT_EQ(e.code, "invalid_field");
  Send(ws, protocol::Vote{"1.1", 1, 1, true, ""});
  e = Next<protocol::Error>(ws);
  EXPECT_EQ(e.code, "hello_required");
}

}  // namespace
}  // namespace once::testing
