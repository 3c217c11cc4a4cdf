#include "coordinator/json_codec.h"

#include <string>
#include <vector>

#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

namespace json = boost::json;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::HasSubstr;

json::object Obj(absl::string_view text) {
  absl::StatusOr<json::object> o = ParseJsonObject(text, "test", false);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *o : json::object();
}

std::string CodeOf(const absl::Status& s) { return ApiCodeOf(s); }

// ---- parsing the body

TEST(ParseJsonObjectTest, AcceptsObjects) {
  ONCE_ASSERT_OK_AND_ASSIGN(json::object o, ParseJsonObject(R"( {"a": 1} )", "x", false));
  EXPECT_EQ(o.at("a").as_int64(), 1);
}

TEST(ParseJsonObjectTest, EmptyBodyIsAnObjectOnlyWhenAllowed) {
  EXPECT_THAT(ParseJsonObject("  \n", "x", true), IsOk());
  absl::StatusOr<json::object> o = ParseJsonObject("", "the publish request", false);
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the publish request")));
  EXPECT_EQ(CodeOf(o.status()), "malformed_json");
}

TEST(ParseJsonObjectTest, RefusesWhatIsNotOneObject) {
  for (const char* body : {"{", "[]", "1", "\"s\"", "null", "{} {}", "{} x", "{\"a\":}", "{'a': 1}",
                           "{\"a\": 1,}", "\xff"}) {
    SCOPED_TRACE(body);
    absl::StatusOr<json::object> o = ParseJsonObject(body, "x", false);
    EXPECT_THAT(o, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(CodeOf(o.status()), "malformed_json");
  }
}

TEST(ParseJsonObjectTest, RefusesDeepNesting) {
  std::string deep =
      "{\"a\":" + std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']') + "}";
  EXPECT_EQ(CodeOf(ParseJsonObject(deep, "x", false).status()), "malformed_json");
  std::string ok = "{\"a\":" + std::string(4, '[') + std::string(4, ']') + "}";
  EXPECT_THAT(ParseJsonObject(ok, "x", false), IsOk());
}

TEST(ParseJsonObjectTest, RefusesInvalidUtf8InStrings) {
  EXPECT_EQ(CodeOf(ParseJsonObject("{\"a\":\"\xc3\x28\"}", "x", false).status()), "malformed_json");
}

// ---- FieldReader

TEST(FieldReaderTest, ReadsTypedFieldsAndNamesTheWrongOnes) {
  json::object o = Obj(R"({"i": 5, "s": "x", "b": true, "d": 2.0, "n": null})");
  FieldReader r(o, "things");
  int64_t i = 0, d = 0, n = 7;
  std::string s;
  bool b = false, present = false;
  ONCE_EXPECT_OK(r.Int("i", &i));
  ONCE_EXPECT_OK(r.Int("d", &d));
  ONCE_EXPECT_OK(r.Int("n", &n));  // null: absent
  ONCE_EXPECT_OK(r.String("s", &s, &present));
  ONCE_EXPECT_OK(r.Bool("b", &b));
  EXPECT_EQ(i, 5);
  EXPECT_EQ(d, 2);
  EXPECT_EQ(n, 7);
  EXPECT_EQ(s, "x");
  EXPECT_TRUE(present);
  EXPECT_TRUE(b);
  ONCE_EXPECT_OK(r.NoOtherFields());

  absl::Status wrong = r.Int("s", &i);
  EXPECT_THAT(wrong,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("things: field \"s\"")));
  EXPECT_EQ(CodeOf(wrong), "invalid_field");
  EXPECT_EQ(CodeOf(r.String("i", &s)), "invalid_field");
  EXPECT_EQ(CodeOf(r.Bool("s", &b)), "invalid_field");
}

TEST(FieldReaderTest, RangesAndIntegrality) {
  json::object o = Obj(R"({"big": 1e30, "frac": 1.5, "u": 18446744073709551615, "neg": -3})");
  FieldReader r(o, "x");
  int64_t v = 0;
  EXPECT_EQ(CodeOf(r.Int("big", &v)), "invalid_field");
  EXPECT_EQ(CodeOf(r.Int("frac", &v)), "invalid_field");
  EXPECT_EQ(CodeOf(r.Int("u", &v)), "invalid_field");
  EXPECT_THAT(r.Int("neg", &v, 0, 10), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("must be in [0, 10], got -3")));
  int small = 0;
  json::object o2 = Obj(R"({"i": 3000000000})");
  FieldReader r2(o2, "x");
  EXPECT_EQ(CodeOf(r2.Int32("i", &small)), "invalid_field");
}

TEST(FieldReaderTest, UnknownFieldsAreNamed) {
  json::object o = Obj(R"({"known": 1, "typo": 2})");
  FieldReader r(o, "settings");
  int64_t v;
  ONCE_EXPECT_OK(r.Int("known", &v));
  absl::Status s = r.NoOtherFields();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"typo\"")));
  EXPECT_EQ(CodeOf(s), "unknown_field");
}

// ---- topics

TEST(TopicConfigTest, DefaultsFillWhatIsLeftOut) {
  broker::TopicConfig defaults;
  defaults.partitions = 4;
  defaults.backend = broker::Backend::kMemory;
  ONCE_ASSERT_OK_AND_ASSIGN(broker::TopicConfig c,
                            TopicConfigFromJson(Obj(R"({"fsync": "never"})"), defaults));
  EXPECT_EQ(c.partitions, 4);
  EXPECT_EQ(c.backend, broker::Backend::kMemory);
  EXPECT_EQ(c.fsync, broker::FsyncPolicy::kNever);
}

TEST(TopicConfigTest, ReadsEverySetting) {
  ONCE_ASSERT_OK_AND_ASSIGN(
      broker::TopicConfig c,
      TopicConfigFromJson(Obj(R"({"partitions": 3, "backend": "disk", "fsync": "interval",
                                  "fsync_interval_ms": 50, "retention_ms": 1000,
                                  "retention_bytes": 4096, "max_message_bytes": 512,
                                  "dedup_window_ms": 0, "dedup_max_entries": 10,
                                  "segment_bytes": 8192})"),
                          broker::TopicConfig()));
  EXPECT_EQ(c.partitions, 3);
  EXPECT_EQ(c.fsync, broker::FsyncPolicy::kInterval);
  EXPECT_EQ(c.fsync_interval_ms, 50);
  EXPECT_EQ(c.retention_ms, 1000);
  EXPECT_EQ(c.retention_bytes, 4096);
  EXPECT_EQ(c.max_message_bytes, 512);
  EXPECT_EQ(c.dedup_window_ms, 0);
  EXPECT_EQ(c.dedup_max_entries, 10);
  EXPECT_EQ(c.segment_bytes, 8192);
  // And back.
  json::object out = TopicConfigToJson(c);
  ONCE_ASSERT_OK_AND_ASSIGN(broker::TopicConfig again,
                            TopicConfigFromJson(out, broker::TopicConfig()));
  EXPECT_EQ(again, c);
}

TEST(TopicConfigTest, RefusesBadValues) {
  for (const char* body : {R"({"backend": "tape"})", R"({"fsync": 1})", R"({"partitions": "2"})",
                           R"({"retention_ms": true})"}) {
    SCOPED_TRACE(body);
    EXPECT_EQ(CodeOf(TopicConfigFromJson(Obj(body), broker::TopicConfig()).status()),
              "invalid_field");
  }
  EXPECT_EQ(CodeOf(TopicConfigFromJson(Obj(R"({"partitons": 2})"), broker::TopicConfig()).status()),
            "unknown_field");
}

// ---- publishing

TEST(PublishRequestTest, ReadsMessages) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<broker::Record> records,
                            PublishRequestFromJson(Obj(R"({"messages": [
          {"key": "k", "value": "hello", "headers": {"a": "1", "b": "2"},
           "idempotency_key": "i1"},
          {"value_b64": "AP8="},
          {"key": "", "value": ""}]})"),
                                                   nullptr));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_TRUE(records[0].has_key());
  EXPECT_EQ(records[0].key, "k");
  EXPECT_EQ(records[0].value, "hello");
  EXPECT_EQ(records[0].idempotency_key, "i1");
  ASSERT_EQ(records[0].headers.size(), 2u);
  EXPECT_EQ(records[0].headers[1].key, "b");
  EXPECT_EQ(records[0].flags & broker::kRecordValueBinary, 0);
  EXPECT_FALSE(records[1].has_key());
  EXPECT_EQ(records[1].value, std::string("\x00\xff", 2));
  EXPECT_NE(records[1].flags & broker::kRecordValueBinary, 0);
  EXPECT_TRUE(records[2].has_key());  // an empty key is still a key
  EXPECT_EQ(records[2].value, "");
}

TEST(PublishRequestTest, IdempotencyHeaderAppliesToOneMessage) {
  const std::string header = "key-1";
  ONCE_ASSERT_OK_AND_ASSIGN(
      std::vector<broker::Record> one,
      PublishRequestFromJson(Obj(R"({"messages": [{"value": "v"}]})"), &header));
  EXPECT_EQ(one[0].idempotency_key, "key-1");
  EXPECT_THAT(PublishRequestFromJson(
                  Obj(R"({"messages": [{"value": "v", "idempotency_key": "key-1"}]})"), &header),
              IsOk());
  EXPECT_EQ(
      CodeOf(PublishRequestFromJson(
                 Obj(R"({"messages": [{"value": "v", "idempotency_key": "other"}]})"), &header)
                 .status()),
      "bad_request");
  EXPECT_EQ(CodeOf(PublishRequestFromJson(Obj(R"({"messages": [{"value": "a"}, {"value": "b"}]})"),
                                          &header)
                       .status()),
            "bad_request");
  const std::string empty;
  EXPECT_EQ(
      CodeOf(PublishRequestFromJson(Obj(R"({"messages": [{"value": "a"}]})"), &empty).status()),
      "bad_request");
}

TEST(PublishRequestTest, RefusesMalformedMessages) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "invalid_field"},
      {R"({"messages": {}})", "invalid_field"},
      {R"({"messages": []})", "invalid_field"},
      {R"({"messages": [1]})", "invalid_field"},
      {R"({"messages": [{}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "value_b64": "YQ=="}]})", "invalid_field"},
      {R"({"messages": [{"value_b64": "%%%"}]})", "invalid_field"},
      {R"({"messages": [{"value": 5}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "key": []}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "headers": "h"}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "headers": {"h": null}}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "idempotency_key": ""}]})", "invalid_field"},
      {R"({"messages": [{"value": "a", "extra": 1}]})", "unknown_field"},
      {R"({"messages": [{"value": "a"}], "extra": 1})", "unknown_field"},
  };
  for (const auto& [body, code] : cases) {
    SCOPED_TRACE(body);
    absl::StatusOr<std::vector<broker::Record>> r = PublishRequestFromJson(Obj(body), nullptr);
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(CodeOf(r.status()), code);
  }
}

TEST(PublishRequestTest, MessageErrorsSayWhatIsWrongInAFixedOrder) {
  // A field's own problem comes before an unknown field, whatever the
  // order in the object; a null field counts as absent.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"extra": 1, "value": 5})", "message 0: field \"value\" must be a string, got a number"},
      {R"({"extra": 1, "value": "a"})", "message 0: unknown field \"extra\""},
      {R"({"value": "a", "key": [], "headers": 1})",
       "message 0: field \"key\" must be a string, got an array"},
      {R"({"value": null})",
       "message 0: \"value\" (UTF-8 text) or \"value_b64\" (base64 bytes) is required"},
      {R"({"value": "a", "value_b64": "YQ=="})",
       "message 0: give either \"value\" or \"value_b64\", not both"},
      {R"({"value_b64": "%%%"})", "message 0: field \"value_b64\" is not valid base64"},
      {R"({"value": "a", "idempotency_key": ""})",
       "message 0: field \"idempotency_key\" must not be empty"},
      {R"({"value": "a", "headers": {"h": 1}})",
       "message 0: field \"headers\" has \"h\" which is not a string"},
  };
  for (const auto& [message, text] : cases) {
    SCOPED_TRACE(message);
    absl::StatusOr<std::vector<broker::Record>> r =
        PublishRequestFromJson(Obj("{\"messages\": [" + message + "]}"), nullptr);
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text)));
  }
  // Null optional fields are absent, not errors.
  ONCE_ASSERT_OK_AND_ASSIGN(
      std::vector<broker::Record> records,
      PublishRequestFromJson(
          Obj(R"({"messages": [{"value": "v", "key": null, "headers": null, "idempotency_key": null}]})"),
          nullptr));
  EXPECT_EQ(records[0].value, "v");
  EXPECT_EQ(records[0].flags & broker::kRecordHasKey, 0);
}

TEST(PublishRequestTest, NamesTheBadMessage) {
  absl::StatusOr<std::vector<broker::Record>> r = PublishRequestFromJson(
      Obj(R"({"messages": [{"value": "ok"}, {"value": "ok"}, {"value": 3}]})"), nullptr);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("message 2")));
}

TEST(PublishRequestTest, LimitsTheBatch) {
  std::string body = "{\"messages\": [";
  for (size_t i = 0; i <= kMaxMessagesPerPublish; ++i)
    body += i ? ",{\"value\":\"\"}" : "{\"value\":\"\"}";
  body += "]}";
  EXPECT_THAT(PublishRequestFromJson(Obj(body), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
}

TEST(PublishResultsTest, Renders) {
  std::vector<broker::PublishResult> results = {{1, 7, false}, {0, 3, true}};
  EXPECT_EQ(json::serialize(PublishResultsToJson(results)),
            R"({"results":[{"partition":1,"offset":7,"duplicate":false},)"
            R"({"partition":0,"offset":3,"duplicate":true}]})");
}

// ---- groups

TEST(GroupConfigTest, ReadsSettingsAndPositions) {
  ONCE_ASSERT_OK_AND_ASSIGN(
      broker::GroupConfig c,
      GroupConfigFromJson(Obj(R"({"mode": "ordered", "guarantee": "idempotent",
                                  "ack_timeout_ms": 500, "max_deliveries": 3,
                                  "dead_letter_topic": "dlq", "start": {"offset": 12},
                                  "prefetch": 7, "session_timeout_ms": 900,
                                  "backoff_base_ms": 0, "backoff_max_ms": 10})")));
  EXPECT_EQ(c.mode, broker::GroupMode::kOrdered);
  EXPECT_EQ(c.guarantee, broker::Guarantee::kIdempotent);
  EXPECT_EQ(c.ack_timeout_ms, 500);
  EXPECT_EQ(c.max_deliveries, 3);
  EXPECT_EQ(c.dead_letter_topic, "dlq");
  EXPECT_EQ(c.start, broker::Position::Offset(12));
  EXPECT_EQ(c.prefetch, 7);
  ONCE_ASSERT_OK_AND_ASSIGN(broker::GroupConfig again, GroupConfigFromJson(GroupConfigToJson(c)));
  EXPECT_EQ(again, c);
}

TEST(GroupConfigTest, EmptyBodyGivesDefaults) {
  ONCE_ASSERT_OK_AND_ASSIGN(broker::GroupConfig c, GroupConfigFromJson(json::object()));
  EXPECT_EQ(c, broker::GroupConfig());
}

TEST(GroupConfigTest, RefusesBadSettings) {
  for (const char* body : {R"({"mode": "broadcast"})", R"({"guarantee": "maybe"})",
                           R"({"start": "middle"})", R"({"start": {"offset": -1}})",
                           R"({"start": {"offset": 1, "time_ms": 2}})", R"({"prefetch": "x"})"}) {
    SCOPED_TRACE(body);
    EXPECT_EQ(CodeOf(GroupConfigFromJson(Obj(body)).status()), "invalid_field");
  }
  EXPECT_EQ(CodeOf(GroupConfigFromJson(Obj(R"({"prefech": 1})")).status()), "unknown_field");
}

TEST(PositionTest, RoundTrips) {
  for (const broker::Position& p :
       {broker::Position::Earliest(), broker::Position::Latest(), broker::Position::Offset(5),
        broker::Position::Time(1700000000000)}) {
    ONCE_ASSERT_OK_AND_ASSIGN(broker::Position again, PositionFromJson(PositionToJson(p), "p"));
    EXPECT_EQ(again, p);
  }
}

TEST(FetchRequestTest, DefaultsAndBounds) {
  ONCE_ASSERT_OK_AND_ASSIGN(FetchRequest f, FetchRequestFromJson(Obj(R"({"consumer": "c"})"), 100));
  EXPECT_EQ(f.consumer, "c");
  EXPECT_EQ(f.max, 10);
  EXPECT_EQ(f.wait_ms, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(
      f, FetchRequestFromJson(Obj(R"({"consumer": "c", "max": 3, "wait_ms": 100})"), 100));
  EXPECT_EQ(f.max, 3);
  EXPECT_EQ(f.wait_ms, 100);
  for (const char* body :
       {R"({})", R"({"consumer": 1})", R"({"consumer": "c", "max": 0})",
        R"({"consumer": "c", "max": 10001})", R"({"consumer": "c", "wait_ms": 101})",
        R"({"consumer": "c", "wait_ms": -1})"}) {
    SCOPED_TRACE(body);
    EXPECT_EQ(CodeOf(FetchRequestFromJson(Obj(body), 100).status()), "invalid_field");
  }
  EXPECT_EQ(CodeOf(FetchRequestFromJson(Obj(R"({"consumer": "c", "wait": 1})"), 100).status()),
            "unknown_field");
}

TEST(TokensRequestTest, AckAndNack) {
  ONCE_ASSERT_OK_AND_ASSIGN(TokensRequest ack,
                            TokensRequestFromJson(Obj(R"({"tokens": ["a", "b"]})"), false));
  EXPECT_EQ(ack.tokens, std::vector<std::string>({"a", "b"}));
  ONCE_ASSERT_OK_AND_ASSIGN(
      TokensRequest nack,
      TokensRequestFromJson(Obj(R"({"tokens": ["a"], "requeue": false})"), true));
  EXPECT_FALSE(nack.requeue);
  // "requeue" belongs to nack only.
  EXPECT_EQ(
      CodeOf(TokensRequestFromJson(Obj(R"({"tokens": ["a"], "requeue": false})"), false).status()),
      "unknown_field");
  for (const char* body :
       {R"({})", R"({"tokens": "a"})", R"({"tokens": []})", R"({"tokens": ["a", 2]})"}) {
    SCOPED_TRACE(body);
    EXPECT_EQ(CodeOf(TokensRequestFromJson(Obj(body), false).status()), "invalid_field");
  }
}

TEST(ResetRequestTest, Reads) {
  ONCE_ASSERT_OK_AND_ASSIGN(ResetRequest r,
                            ResetRequestFromJson(Obj(R"({"to": {"time_ms": 5}, "partition": 2})")));
  EXPECT_EQ(r.to, broker::Position::Time(5));
  EXPECT_EQ(r.partition, 2);
  ONCE_ASSERT_OK_AND_ASSIGN(r, ResetRequestFromJson(Obj(R"({"to": "latest"})")));
  EXPECT_EQ(r.partition, -1);
  EXPECT_EQ(CodeOf(ResetRequestFromJson(Obj(R"({})")).status()), "invalid_field");
  EXPECT_EQ(CodeOf(ResetRequestFromJson(Obj(R"({"to": "latest", "partition": -1})")).status()),
            "invalid_field");
}

// ---- deliveries

TEST(DeliveryTest, TextStaysTextAndBytesStayBase64) {
  broker::Delivery text;
  text.partition = 2;
  text.record.offset = 9;
  text.record.flags = broker::kRecordHasKey;
  text.record.key = "k";
  text.record.value = "héllo";
  text.record.headers = {{"h", "v"}};
  text.token = "tok";
  text.delivery_count = 3;
  json::object o = DeliveryToJson("orders", text);
  EXPECT_EQ(o.at("id").as_string(), "orders/2/9");
  EXPECT_EQ(o.at("value").as_string(), "héllo");
  EXPECT_FALSE(o.contains("value_b64"));
  EXPECT_EQ(o.at("key").as_string(), "k");
  EXPECT_EQ(o.at("headers").at("h").as_string(), "v");
  EXPECT_EQ(o.at("delivery_token").as_string(), "tok");
  EXPECT_EQ(o.at("delivery_count").as_int64(), 3);

  broker::Delivery bytes;
  bytes.record.flags = broker::kRecordValueBinary;
  bytes.record.value = "abc";
  o = DeliveryToJson("t", bytes);
  EXPECT_EQ(o.at("value_b64").as_string(), "YWJj");
  EXPECT_FALSE(o.contains("value"));
  EXPECT_FALSE(o.contains("key"));

  // Bytes that are not UTF-8 go as base64 even without the flag.
  broker::Delivery raw;
  raw.record.value = "\xff\xfe";
  EXPECT_EQ(DeliveryToJson("t", raw).at("value_b64").as_string(), "//4=");
}

TEST(AckResultTest, ListsRefusals) {
  broker::AckResult result;
  result.applied = 1;
  result.refused.push_back({1, "t1", absl::FailedPreconditionError("redelivered")});
  result.refused.push_back({2, "t2", absl::InvalidArgumentError("forged")});
  json::object o = AckResultToJson(result);
  EXPECT_EQ(o.at("applied").as_int64(), 1);
  ASSERT_EQ(o.at("refused").as_array().size(), 2u);
  EXPECT_EQ(o.at("refused").at(0).at("reason").as_string(), "stale");
  EXPECT_EQ(o.at("refused").at(1).at("reason").as_string(), "invalid");
  EXPECT_EQ(o.at("refused").at(1).at("index").as_int64(), 2);
}

}  // namespace
}  // namespace once::coordinator
