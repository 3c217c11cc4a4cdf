// Integration tests: a real onced child process on 127.0.0.1:0 with a
// temporary data directory, driven over HTTP by a Beast client.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/http_test_client.h"
#include "tests/coordinator/integration_fixture.h"
#include "tests/coordinator/onced_process.h"
#include "tests/testing/status_matchers.h"

namespace once::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

TEST_F(ServiceTest, PrintsConfigAndServesHealth) {
  StartServer();
  EXPECT_THAT(server_->banner(), HasSubstr("data_dir = " + data_dir_));
  EXPECT_THAT(server_->banner(), HasSubstr("listen = 127.0.0.1:0"));
  json::value health = Expect(200, "GET", "/healthz");
  EXPECT_EQ(json::serialize(health), R"({"status":"ok"})");
  Expect(200, "GET", "/readyz");
  EXPECT_EQ(Metric("once_ready"), 1);
}

TEST_F(ServiceTest, PublishFetchAckRoundTrip) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/orders", R"({"partitions": 2, "backend": "disk"})");
  Expect(201, "PUT", "/v1/topics/orders/groups/billing", R"({"mode": "shared"})");

  json::value published = Expect(200, "POST", "/v1/topics/orders/messages",
                                 R"({"messages": [
            {"key": "k1", "value": "text one", "headers": {"h": "v"}},
            {"value_b64": "AAECAw=="},
            {"key": "k1", "value": ""}]})");
  ASSERT_TRUE(published.is_object());
  ASSERT_EQ(published.at("results").as_array().size(), 3u);
  // Same key, same partition, consecutive offsets.
  EXPECT_EQ(published.at("results").at(0).at("partition"),
            published.at("results").at(2).at("partition"));

  json::value fetched = Expect(200, "POST", "/v1/topics/orders/groups/billing/fetch",
                               R"({"consumer": "c1", "max": 10})");
  json::array messages = Messages(fetched);
  ASSERT_EQ(messages.size(), 3u);
  int text = 0, binary = 0, empty = 0;
  for (const json::value& m : messages) {
    const json::object& o = m.as_object();
    EXPECT_EQ(o.at("delivery_count").as_int64(), 1);
    EXPECT_TRUE(o.contains("id"));
    if (o.contains("value_b64")) {
      EXPECT_EQ(o.at("value_b64").as_string(), "AAECAw==");
      EXPECT_FALSE(o.contains("value"));
      ++binary;
    } else if (o.at("value").as_string() == "text one") {
      EXPECT_EQ(o.at("key").as_string(), "k1");
      EXPECT_EQ(o.at("headers").at("h").as_string(), "v");
      ++text;
    } else {
      EXPECT_EQ(o.at("value").as_string(), "");
      ++empty;
    }
  }
  EXPECT_EQ(text, 1);
  EXPECT_EQ(binary, 1);
  EXPECT_EQ(empty, 1);

  const std::vector<std::string> tokens = Tokens(messages);
  json::value acked =
      Expect(200, "POST", "/v1/topics/orders/groups/billing/ack", TokensBody(tokens));
  EXPECT_EQ(acked.at("applied").as_int64(), 3);

  // Nothing left; an ack of the same tokens is stale and says which.
  EXPECT_TRUE(Messages(Expect(200, "POST", "/v1/topics/orders/groups/billing/fetch",
                              R"({"consumer": "c1"})"))
                  .empty());
  json::value stale =
      Expect(409, "POST", "/v1/topics/orders/groups/billing/ack", TokensBody({tokens[0]}));
  EXPECT_EQ(stale.at("error").at("code").as_string(), "stale_tokens");
  EXPECT_EQ(stale.at("error").at("refused").as_array().size(), 1u);

  json::value group = Expect(200, "GET", "/v1/topics/orders/groups/billing");
  EXPECT_EQ(group.at("lag").as_int64(), 0);
  EXPECT_EQ(group.at("acked").as_int64(), 3);
  json::value topic = Expect(200, "GET", "/v1/topics/orders");
  EXPECT_EQ(topic.at("messages").as_int64(), 3);
  EXPECT_EQ(topic.at("groups").at(0).as_string(), "billing");
  EXPECT_EQ(Metric("once_published_messages_total{topic=\"orders\"}"), 3);
  EXPECT_EQ(Metric("once_acked_messages_total{topic=\"orders\",group=\"billing\"}"), 3);
}

TEST_F(ServiceTest, TopicCreateIsIdempotentAndConflictsOnOtherSettings) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/t", R"({"partitions": 3, "backend": "memory"})");
  Expect(200, "PUT", "/v1/topics/t", R"({"partitions": 3, "backend": "memory"})");
  json::value conflict = Expect(409, "PUT", "/v1/topics/t", R"({"partitions": 4})");
  EXPECT_EQ(conflict.at("error").at("code").as_string(), "topic_exists");
  json::value list = Expect(200, "GET", "/v1/topics");
  ASSERT_EQ(list.at("topics").as_array().size(), 1u);
  EXPECT_EQ(list.at("topics").at(0).at("partitions").as_int64(), 3);
  Expect(200, "DELETE", "/v1/topics/t");
  Expect(404, "GET", "/v1/topics/t");
  Expect(404, "DELETE", "/v1/topics/t");
}

TEST_F(ServiceTest, IdempotencyKeyHeaderDeduplicates) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/pay", "");
  json::value first =
      Expect(200, "POST", "/v1/topics/pay/messages", R"({"messages": [{"value": "charge 10"}]})",
             {{"Idempotency-Key", "charge-42"}});
  json::value again =
      Expect(200, "POST", "/v1/topics/pay/messages", R"({"messages": [{"value": "charge 10"}]})",
             {{"Idempotency-Key", "charge-42"}});
  EXPECT_FALSE(first.at("results").at(0).at("duplicate").as_bool());
  EXPECT_TRUE(again.at("results").at(0).at("duplicate").as_bool());
  EXPECT_EQ(first.at("results").at(0).at("offset"), again.at("results").at(0).at("offset"));
  EXPECT_EQ(Expect(200, "GET", "/v1/topics/pay").at("messages").as_int64(), 1);
}

TEST_F(ServiceTest, NackRequeuesForRedelivery) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/jobs", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/jobs/groups/w", R"({"backoff_base_ms": 0})");
  Expect(200, "POST", "/v1/topics/jobs/messages", R"({"messages": [{"value": "job"}]})");
  json::array first =
      Messages(Expect(200, "POST", "/v1/topics/jobs/groups/w/fetch", R"({"consumer": "a"})"));
  ASSERT_EQ(first.size(), 1u);
  Expect(200, "POST", "/v1/topics/jobs/groups/w/nack", TokensBody(Tokens(first)));
  json::array second = Messages(Expect(200, "POST", "/v1/topics/jobs/groups/w/fetch",
                                       R"({"consumer": "b", "wait_ms": 5000})"));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].at("delivery_count").as_int64(), 2);
  EXPECT_EQ(second[0].at("id"), first[0].at("id"));
  EXPECT_EQ(Metric("once_redelivered_messages_total{topic=\"jobs\",group=\"w\"}"), 1);
}

TEST_F(ServiceTest, LongPollWaitsThenAnswersWhenAMessageArrives) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/feed", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/feed/groups/g", "");

  // An empty wait ends at its deadline with no messages.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Messages(Expect(200, "POST", "/v1/topics/feed/groups/g/fetch",
                              R"({"consumer": "c", "wait_ms": 300})"))
                  .empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(290));

  // A long wait is answered by the publish, long before its deadline.
  std::future<absl::StatusOr<HttpResult>> fetch = std::async(std::launch::async, [&] {
    HttpTestClient client(server_->port(), seconds(30));
    return client.Request("POST", "/v1/topics/feed/groups/g/fetch",
                          R"({"consumer": "c", "wait_ms": 20000})");
  });
  ASSERT_TRUE(WaitForMetric("once_fetches_waiting", 1));
  const auto published_at = std::chrono::steady_clock::now();
  Expect(200, "POST", "/v1/topics/feed/messages", R"({"messages": [{"value": "news"}]})");
  ASSERT_EQ(fetch.wait_for(seconds(15)), std::future_status::ready);
  absl::StatusOr<HttpResult> result = fetch.get();
  ONCE_ASSERT_OK(result);
  EXPECT_EQ(result->status, 200);
  json::array messages = Messages(result->json());
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].at("value").as_string(), "news");
  EXPECT_LT(std::chrono::steady_clock::now() - published_at, seconds(5));
}

TEST_F(ServiceTest, RestartKeepsUnackedMessagesAndDropsAckedOnes) {
  StartServer();
  Expect(201, "PUT", "/v1/topics/durable", R"({"partitions": 1, "fsync": "always"})");
  Expect(201, "PUT", "/v1/topics/durable/groups/g", "");
  Expect(200, "POST", "/v1/topics/durable/messages",
         R"({"messages": [{"value": "m0"}, {"value": "m1"}, {"value": "m2"}, {"value": "m3"}]})");
  json::array fetched = Messages(
      Expect(200, "POST", "/v1/topics/durable/groups/g/fetch", R"({"consumer": "c", "max": 4})"));
  ASSERT_EQ(fetched.size(), 4u);
  std::vector<std::string> acked_tokens, unacked_values;
  for (const json::value& m : fetched) {
    const std::string value(m.at("value").as_string());
    if (value == "m0" || value == "m2") {
      acked_tokens.emplace_back(m.at("delivery_token").as_string());
    } else {
      unacked_values.push_back(value);
    }
  }
  Expect(200, "POST", "/v1/topics/durable/groups/g/ack", TokensBody(acked_tokens));
  const std::string old_token(fetched[1].at("delivery_token").as_string());

  StopServer();
  StartServer();

  // The unacked ones come back (maybe after a redelivery backoff, so
  // fetch with waits, a bounded number of times); the acked ones never.
  std::vector<std::string> values;
  for (int i = 0; i < 10 && values.size() < unacked_values.size(); ++i) {
    json::array again = Messages(Expect(200, "POST", "/v1/topics/durable/groups/g/fetch",
                                        R"({"consumer": "c", "max": 10, "wait_ms": 3000})"));
    for (const json::value& m : again) values.emplace_back(m.at("value").as_string());
  }
  EXPECT_TRUE(Messages(Expect(200, "POST", "/v1/topics/durable/groups/g/fetch",
                              R"({"consumer": "c", "max": 10, "wait_ms": 0})"))
                  .empty());
  EXPECT_THAT(values, ::testing::UnorderedElementsAreArray(unacked_values));
  // A token from before the restart is void.
  json::value stale =
      Expect(409, "POST", "/v1/topics/durable/groups/g/ack", TokensBody({old_token}));
  EXPECT_EQ(stale.at("error").at("code").as_string(), "stale_tokens");
  json::value topic = Expect(200, "GET", "/v1/topics/durable");
  EXPECT_EQ(topic.at("messages").as_int64(), 4);
}

TEST_F(ServiceTest, SecondOncedOnTheSameDataDirIsRefused) {
  StartServer();
  ONCE_ASSERT_OK_AND_ASSIGN(
      ExitResult second,
      RunOncedToExit({"--data-dir", data_dir_, "--listen", "127.0.0.1:0"}, root_, seconds(20)));
  EXPECT_NE(second.exit_code, 0);
  EXPECT_THAT(second.stderr_text, HasSubstr("in use by another onced"));
  EXPECT_THAT(second.stderr_text, HasSubstr(absl::StrCat("pid ", server_->pid())));
  // The first one is unharmed.
  Expect(200, "GET", "/healthz");
}

TEST_F(ServiceTest, SigtermAnswersInFlightRequestsAndExitsZero) {
  StartServer({"--drain-timeout-ms", "10000"});
  Expect(201, "PUT", "/v1/topics/q", R"({"backend": "memory"})");
  Expect(201, "PUT", "/v1/topics/q/groups/g", "");
  std::future<absl::StatusOr<HttpResult>> fetch = std::async(std::launch::async, [&] {
    HttpTestClient client(server_->port(), seconds(30));
    return client.Request("POST", "/v1/topics/q/groups/g/fetch",
                          R"({"consumer": "c", "wait_ms": 25000})");
  });
  ASSERT_TRUE(WaitForMetric("once_fetches_waiting", 1));
  // An idle keep-alive connection must not hold the drain up.
  HttpTestClient idle = Client();
  ASSERT_TRUE(idle.Request("GET", "/healthz").ok());

  const auto signalled_at = std::chrono::steady_clock::now();
  ONCE_ASSERT_OK(server_->Signal(SIGTERM));
  ASSERT_EQ(fetch.wait_for(seconds(15)), std::future_status::ready);
  absl::StatusOr<HttpResult> result = fetch.get();
  ONCE_ASSERT_OK(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_TRUE(Messages(result->json()).empty());
  EXPECT_FALSE(result->keep_alive);
  ONCE_ASSERT_OK_AND_ASSIGN(int code, server_->Wait(seconds(15)));
  EXPECT_EQ(code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - signalled_at, seconds(8));
  EXPECT_THAT(ReadFileOrEmpty(root_ + "/onced.log"), HasSubstr("stopped cleanly"));
  server_.reset();
}

TEST_F(ServiceTest, SilentAndSlowClientsAreDisconnected) {
  StartServer({"--idle-timeout-ms", "500"});
  // Silent: connects and says nothing.
  HttpTestClient silent = Client();
  ONCE_ASSERT_OK(silent.Connect());
  ONCE_EXPECT_OK(silent.WaitForClose(seconds(5)));

  // Slow: dribbles a request one byte at a time; the whole request has
  // one deadline, so it is cut off however steadily it dribbles.
  HttpTestClient slow = Client();
  ONCE_ASSERT_OK(slow.Connect());
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ";
  const auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (int i = 0; i < 100 && !cut; ++i) {
    cut = !slow.SendRaw(i < static_cast<int>(request.size()) ? request.substr(i, 1) : "a").ok();
    if (!cut) cut = slow.WaitForClose(milliseconds(50)).ok();
  }
  EXPECT_TRUE(cut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(4));
  Expect(200, "GET", "/healthz");
}

TEST_F(ServiceTest, ConnectionsBeyondTheLimitGet503) {
  StartServer({"--max-connections", "2", "--idle-timeout-ms", "20000"});
  // The readiness probe's connection stays counted until the server has
  // read its close, so the first connections may be refused for a moment:
  // take both slots, retrying (bounded) until both are served.
  std::optional<HttpTestClient> a, b;
  bool both = false;
  for (int i = 0; i < 100 && !both; ++i) {
    a.emplace(server_->port());
    b.emplace(server_->port());
    absl::StatusOr<HttpResult> ra = a->Request("GET", "/healthz");
    absl::StatusOr<HttpResult> rb = b->Request("GET", "/healthz");
    both = ra.ok() && ra->status == 200 && rb.ok() && rb->status == 200;
    if (!both) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(both);
  HttpTestClient c = Client();
  absl::StatusOr<HttpResult> refused = c.Request("GET", "/healthz");
  ONCE_ASSERT_OK(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->error_code(), "too_many_connections");
  EXPECT_FALSE(refused->keep_alive);
  // Freeing a slot admits new connections again.
  a->Close();
  b->Close();
  bool admitted = false;
  for (int i = 0; i < 200 && !admitted; ++i) {
    HttpTestClient d = Client();
    absl::StatusOr<HttpResult> r = d.Request("GET", "/healthz");
    admitted = r.ok() && r->status == 200;
    if (!admitted) std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(admitted);
  EXPECT_GE(Metric("once_http_connections_rejected_total"), 1);
}

TEST_F(ServiceTest, EnvironmentSuppliesDefaultsAndFlagsOverrideThem) {
  // ONCE_LISTEN is overridden by --listen; ONCE_MAX_WAIT_MS is taken.
  setenv("ONCE_MAX_WAIT_MS", "1234", 1);
  setenv("ONCE_LISTEN", "127.0.0.1:1", 1);
  StartServer();
  unsetenv("ONCE_MAX_WAIT_MS");
  unsetenv("ONCE_LISTEN");
  EXPECT_THAT(server_->banner(), HasSubstr("max_wait_ms = 1234"));
  EXPECT_THAT(server_->banner(), HasSubstr("listen = 127.0.0.1:0"));
}

// ---- the hostile table

struct HostileCase {
  std::string name;
  std::string raw;  // the whole request, bytes as sent
  int status;
  std::string code;  // error.code expected
};

std::string Req(absl::string_view method, absl::string_view target, absl::string_view body = "",
                absl::string_view content_type = "application/json",
                absl::string_view extra_headers = "") {
  std::string r = absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: test\r\n", extra_headers);
  if (!body.empty() || method == "POST" || method == "PUT") {
    if (!content_type.empty()) absl::StrAppend(&r, "Content-Type: ", content_type, "\r\n");
    absl::StrAppend(&r, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&r, "\r\n", body);
  return r;
}

TEST_F(ServiceTest, HostileRequestsGetTheRightErrorAndLeaveTheServerHealthy) {
  StartServer({"--max-body-bytes", "65536", "--max-wait-ms", "60000"});
  Expect(201, "PUT", "/v1/topics/t", R"({"max_message_bytes": 1024})");
  Expect(201, "PUT", "/v1/topics/t/groups/g", R"({"backoff_base_ms": 0})");
  Expect(201, "PUT", "/v1/topics/t/groups/eo", R"({"guarantee": "exactly-once"})");
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "x"}]})");
  json::array got =
      Messages(Expect(200, "POST", "/v1/topics/t/groups/g/fetch", R"({"consumer": "c"})"));
  ASSERT_EQ(got.size(), 1u);
  const std::string token(got[0].at("delivery_token").as_string());
  Expect(200, "POST", "/v1/topics/t/groups/g/ack", TokensBody({token}));  // now stale

  const std::string deep = std::string(200, '[') + std::string(200, ']');
  const std::string g = "/v1/topics/t/groups/g";
  const std::vector<HostileCase> cases = {
      // Routing.
      {"unknown route", Req("GET", "/nope"), 404, "route_not_found"},
      {"unknown version", Req("GET", "/v2/topics"), 404, "route_not_found"},
      {"unknown subresource", Req("GET", "/v1/topics/t/whatever"), 404, "route_not_found"},
      {"trailing slash", Req("GET", "/v1/topics/t/"), 404, "route_not_found"},
      {"delete the topic list", Req("DELETE", "/v1/topics"), 405, "method_not_allowed"},
      {"post to healthz", Req("POST", "/healthz", "{}"), 405, "method_not_allowed"},
      {"patch a topic", Req("PATCH", "/v1/topics/t", "{}"), 405, "method_not_allowed"},
      {"get the messages", Req("GET", "/v1/topics/t/messages"), 405, "method_not_allowed"},
      {"WebSocket route without an upgrade", Req("GET", "/v1/ws"), 426, "upgrade_required"},
      {"WebSocket upgrade elsewhere",
       Req("GET", "/v1/topics", "", "",
           "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
       404, "route_not_found"},
      {"absolute-form target", Req("GET", "http://example.com/v1/topics"), 400, "bad_request"},
      {"asterisk target", Req("GET", "*"), 400, "bad_request"},
      {"bad percent-encoding", Req("GET", "/v1/topics/%zz"), 400, "bad_request"},
      {"encoded slash", Req("GET", "/v1/topics/a%2Fb"), 400, "bad_request"},
      // Names and missing things.
      {"unknown topic", Req("GET", "/v1/topics/missing"), 404, "topic_not_found"},
      {"unknown group", Req("GET", "/v1/topics/t/groups/missing"), 404, "group_not_found"},
      {"publish to unknown topic",
       Req("POST", "/v1/topics/missing/messages", R"({"messages":[{"value":"x"}]})"), 404,
       "topic_not_found"},
      {"group on unknown topic", Req("PUT", "/v1/topics/missing/groups/g", "{}"), 404,
       "topic_not_found"},
      {"topic name with a space", Req("PUT", "/v1/topics/bad%20name", "{}"), 400, "invalid_name"},
      {"topic name ..", Req("PUT", "/v1/topics/..", "{}"), 400, "invalid_name"},
      {"reserved topic name", Req("PUT", "/v1/topics/__system", "{}"), 400, "invalid_name"},
      {"topic name too long", Req("PUT", "/v1/topics/" + std::string(201, 'a'), "{}"), 400,
       "invalid_name"},
      {"group name with a quote", Req("PUT", "/v1/topics/t/groups/a%22b", "{}"), 400,
       "invalid_name"},
      // Topic settings.
      {"truncated JSON", Req("PUT", "/v1/topics/t2", "{"), 400, "malformed_json"},
      {"JSON array body", Req("PUT", "/v1/topics/t2", "[]"), 400, "malformed_json"},
      {"trailing garbage", Req("PUT", "/v1/topics/t2", "{} x"), 400, "malformed_json"},
      {"partitions as text", Req("PUT", "/v1/topics/t2", R"({"partitions":"two"})"), 400,
       "invalid_field"},
      {"zero partitions", Req("PUT", "/v1/topics/t2", R"({"partitions":0})"), 400, "invalid_field"},
      {"huge partitions", Req("PUT", "/v1/topics/t2", R"({"partitions":1e30})"), 400,
       "invalid_field"},
      {"fractional partitions", Req("PUT", "/v1/topics/t2", R"({"partitions":1.5})"), 400,
       "invalid_field"},
      {"unknown backend", Req("PUT", "/v1/topics/t2", R"({"backend":"tape"})"), 400,
       "invalid_field"},
      {"unknown fsync", Req("PUT", "/v1/topics/t2", R"({"fsync":"sometimes"})"), 400,
       "invalid_field"},
      {"misspelt setting", Req("PUT", "/v1/topics/t2", R"({"partitionz":2})"), 400,
       "unknown_field"},
      {"other settings for an existing topic", Req("PUT", "/v1/topics/t", R"({"partitions":7})"),
       409, "topic_exists"},
      {"text/plain body", Req("PUT", "/v1/topics/t2", "{}", "text/plain"), 415,
       "unsupported_media_type"},
      // Publishing.
      {"publish not JSON", Req("POST", "/v1/topics/t/messages", "not json"), 400, "malformed_json"},
      {"publish empty body", Req("POST", "/v1/topics/t/messages", ""), 400, "malformed_json"},
      {"publish without messages", Req("POST", "/v1/topics/t/messages", "{}"), 400,
       "invalid_field"},
      {"messages not an array", Req("POST", "/v1/topics/t/messages", R"({"messages":{}})"), 400,
       "invalid_field"},
      {"no messages", Req("POST", "/v1/topics/t/messages", R"({"messages":[]})"), 400,
       "invalid_field"},
      {"message not an object", Req("POST", "/v1/topics/t/messages", R"({"messages":[42]})"), 400,
       "invalid_field"},
      {"value and value_b64",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":"a","value_b64":"YQ=="}]})"),
       400, "invalid_field"},
      {"no value", Req("POST", "/v1/topics/t/messages", R"({"messages":[{"key":"k"}]})"), 400,
       "invalid_field"},
      {"bad base64", Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value_b64":"*"}]})"),
       400, "invalid_field"},
      {"numeric value", Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":1}]})"), 400,
       "invalid_field"},
      {"numeric key",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"key":7,"value":"a"}]})"), 400,
       "invalid_field"},
      {"headers as array",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":"a","headers":[1]}]})"), 400,
       "invalid_field"},
      {"numeric header",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":"a","headers":{"h":1}}]})"),
       400, "invalid_field"},
      {"unknown message field",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":"a","colour":"red"}]})"), 400,
       "unknown_field"},
      {"idempotency header on a batch",
       Req("POST", "/v1/topics/t/messages", R"({"messages":[{"value":"a"},{"value":"b"}]})",
           "application/json", "Idempotency-Key: k\r\n"),
       400, "bad_request"},
      {"message over max_message_bytes",
       Req("POST", "/v1/topics/t/messages",
           absl::StrCat(R"({"messages":[{"value":")", std::string(2000, 'v'), R"("}]})")),
       413, "message_too_large"},
      {"body over max_body_bytes",
       Req("POST", "/v1/topics/t/messages",
           absl::StrCat(R"({"messages":[{"value":")", std::string(70000, 'v'), R"("}]})")),
       413, "payload_too_large"},
      {"deeply nested JSON", Req("POST", "/v1/topics/t/messages", R"({"messages":)" + deep + "}"),
       400, "malformed_json"},
      {"invalid UTF-8",
       Req("POST", "/v1/topics/t/messages", "{\"messages\":[{\"value\":\"\xff\xfe\"}]}"), 400,
       "malformed_json"},
      // Groups.
      {"unknown mode", Req("PUT", "/v1/topics/t/groups/g2", R"({"mode":"broadcast"})"), 400,
       "invalid_field"},
      {"unknown guarantee", Req("PUT", "/v1/topics/t/groups/g2", R"({"guarantee":"at-most-once"})"),
       400, "invalid_field"},
      {"zero max_deliveries", Req("PUT", "/v1/topics/t/groups/g2", R"({"max_deliveries":0})"), 400,
       "invalid_field"},
      {"unknown start", Req("PUT", "/v1/topics/t/groups/g2", R"({"start":"middle"})"), 400,
       "invalid_field"},
      {"group with other settings", Req("PUT", g, R"({"mode":"ordered"})"), 409, "group_exists"},
      {"fetch without consumer", Req("POST", g + "/fetch", "{}"), 400, "invalid_field"},
      {"fetch max 0", Req("POST", g + "/fetch", R"({"consumer":"c","max":0})"), 400,
       "invalid_field"},
      {"fetch max too large", Req("POST", g + "/fetch", R"({"consumer":"c","max":100000})"), 400,
       "invalid_field"},
      {"negative wait", Req("POST", g + "/fetch", R"({"consumer":"c","wait_ms":-1})"), 400,
       "invalid_field"},
      {"wait beyond the limit", Req("POST", g + "/fetch", R"({"consumer":"c","wait_ms":9999999})"),
       400, "invalid_field"},
      {"consumer id with a space", Req("POST", g + "/fetch", R"({"consumer":"a b"})"), 400,
       "invalid_field"},
      {"fetch from an exactly-once group",
       Req("POST", "/v1/topics/t/groups/eo/fetch", R"({"consumer":"c"})"), 409,
       "exactly_once_group"},
      {"tokens not an array", Req("POST", g + "/ack", R"({"tokens":"abc"})"), 400, "invalid_field"},
      {"no tokens", Req("POST", g + "/ack", R"({"tokens":[]})"), 400, "invalid_field"},
      {"numeric token", Req("POST", g + "/ack", R"({"tokens":[1]})"), 400, "invalid_field"},
      {"forged token", Req("POST", g + "/ack", R"({"tokens":["forged"]})"), 400, "invalid_tokens"},
      {"stale token", Req("POST", g + "/ack", TokensBody({token})), 409, "stale_tokens"},
      {"requeue as text",
       Req("POST", g + "/nack", absl::StrCat(R"({"requeue":"yes","tokens":[")", token, R"("]})")),
       400, "invalid_field"},
      {"reset to nowhere", Req("POST", g + "/reset", R"({"to":"middle"})"), 400, "invalid_field"},
      {"reset a missing partition", Req("POST", g + "/reset", R"({"to":"earliest","partition":5})"),
       400, "invalid_field"},
      {"reset without to", Req("POST", g + "/reset", "{}"), 400, "invalid_field"},
      // Broken HTTP.
      {"garbage request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
      {"bad Content-Length", "GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400,
       "bad_request"},
      {"bad HTTP version", "GET /healthz HTTP/9.9x\r\n\r\n", 400, "bad_request"},
      {"header too large",
       absl::StrCat("GET /healthz HTTP/1.1\r\nX-Big: ", std::string(20000, 'h'), "\r\n\r\n"), 431,
       "header_too_large"},
      {"chunked body over the limit",
       absl::StrCat("POST /v1/topics/t/messages HTTP/1.1\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n11170\r\n",
                    std::string(70000, 'x'), "\r\n0\r\n\r\n"),
       413, "payload_too_large"},
  };
  ASSERT_GE(cases.size(), 40u);

  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.name);
    HttpTestClient client = Client();
    ONCE_ASSERT_OK(client.SendRaw(c.raw));
    absl::StatusOr<HttpResult> r = client.ReadResponse();
    ONCE_ASSERT_OK(r);
    EXPECT_EQ(r->status, c.status) << r->body;
    EXPECT_EQ(r->error_code(), c.code) << r->body;
    json::value body = r->json();
    ASSERT_TRUE(body.is_object()) << r->body;
    EXPECT_FALSE(body.at("error").at("message").as_string().empty());
    EXPECT_EQ(r->header("Content-Type"), "application/json");
    if (c.status == 405) {
      EXPECT_FALSE(r->header("Allow").empty());
    }
  }

  // Still healthy, still serving, nothing leaked.
  Expect(200, "GET", "/healthz");
  Expect(200, "POST", "/v1/topics/t/messages", R"({"messages": [{"value": "after"}]})");
  json::array after = Messages(
      Expect(200, "POST", "/v1/topics/t/groups/g/fetch", R"({"consumer": "c", "max": 10})"));
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].at("value").as_string(), "after");
  EXPECT_TRUE(WaitForMetric("once_http_connections_open", 1));  // the scrape's own
}

}  // namespace
}  // namespace once::testing
