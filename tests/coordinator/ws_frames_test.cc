// The hand-written frames of coordinator/ws_frames.h must be the very
// bytes boost::json::serialize gives for the DOM the session used to build
// (schema/ws_protocol.md): compared here field for field, byte for byte.
#include "coordinator/ws_frames.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "coordinator/json_escape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

namespace json = boost::json;

broker::Delivery MakeDelivery(std::string value) {
  broker::Delivery d;
  d.partition = 3;
  d.record.offset = 41;
  d.record.timestamp_ms = 1'700'000'000'123;
  d.record.value = std::move(value);
  d.token = "tok-3-41-abc";
  d.delivery_count = 2;
  return d;
}

// The DOM frame the session built before ws_frames existed.
std::string DomMessageFrame(int64_t id, absl::string_view topic, const broker::Delivery& d) {
  json::object frame;
  frame["type"] = "message";
  frame["subscription"] = id;
  for (auto& field : DeliveryToJson(topic, d)) frame[field.key()] = std::move(field.value());
  return json::serialize(frame);
}

TEST(WsFramesTest, MessageFrameMatchesTheDom) {
  std::vector<broker::Delivery> cases;
  cases.push_back(MakeDelivery("plain text"));
  cases.push_back(MakeDelivery(""));
  // Every escape boost::json writes, and multi-byte UTF-8 left alone.
  cases.push_back(MakeDelivery("q\"b\\s/\b\f\n\r\t\x01\x1f\x7f h\xC3\xA9 \xE2\x82\xAC"));
  cases.push_back(MakeDelivery(std::string("\xff\xfe binary", 9)));  // not UTF-8: value_b64
  broker::Delivery binary = MakeDelivery("text");
  binary.record.flags |= broker::kRecordValueBinary;
  cases.push_back(binary);
  broker::Delivery keyed = MakeDelivery("v");
  keyed.record.flags |= broker::kRecordHasKey;
  keyed.record.key = "user \"7\"";
  keyed.record.headers.push_back({"h1", "x"});
  keyed.record.headers.push_back({"h2", "y\n"});
  keyed.record.headers.push_back({"h1", "last wins"});
  cases.push_back(keyed);
  broker::Delivery bad_key = MakeDelivery("v");
  bad_key.record.flags |= broker::kRecordHasKey;
  bad_key.record.key = std::string("k\xff", 2);  // replaced by U+FFFD, as the DOM does
  cases.push_back(bad_key);
  broker::Delivery long_token = MakeDelivery("v");
  long_token.token = std::string(300, 't');  // longer than the frame writer's buffer
  cases.push_back(long_token);
  broker::Delivery large = MakeDelivery(std::string(5000, 'x'));
  large.record.timestamp_ms = -1;
  large.record.offset = INT64_MAX;
  cases.push_back(large);
  // Topic names never need escaping today; a name that did would still
  // make valid JSON.
  for (absl::string_view topic : {"orders", "a\"b\\c", ""}) {
    for (const broker::Delivery& d : cases) {
      EXPECT_EQ(MessageFrame(7, topic, d), DomMessageFrame(7, topic, d)) << d.record.value;
    }
  }
}

TEST(WsFramesTest, MessagesFrameMatchesTheDom) {
  std::vector<broker::Delivery> batch = {MakeDelivery("a"), MakeDelivery("b\"c")};
  batch[1].record.offset = 42;
  json::object frame;
  frame["type"] = "messages";
  frame["subscription"] = 12;
  json::array& messages = frame["messages"].emplace_array();
  for (const broker::Delivery& d : batch) messages.emplace_back(DeliveryToJson("t", d));
  EXPECT_EQ(MessagesFrame(12, "t", batch), json::serialize(frame));
  // And it is JSON a client can read back.
  json::value parsed = json::parse(MessagesFrame(12, "t", batch));
  EXPECT_EQ(parsed.at("messages").as_array().size(), 2u);
  EXPECT_EQ(parsed.at("messages").at(1).at("value").as_string(), "b\"c");
}

// With delivery tags, "delivery_tag" takes the token's place and nothing
// else changes.
TEST(WsFramesTest, TaggedFramesCarryTheTagInsteadOfTheToken) {
  std::vector<broker::Delivery> batch = {MakeDelivery("a"), MakeDelivery("b"), MakeDelivery("c")};
  for (broker::Delivery& d : batch) d.token.clear();  // FetchHandles makes none
  json::object frame;
  frame["type"] = "messages";
  frame["subscription"] = 12;
  json::array& messages = frame["messages"].emplace_array();
  for (size_t i = 0; i < batch.size(); ++i) {
    json::object m = DeliveryToJson("t", batch[i]);
    json::object tagged;
    for (auto& field : m) {
      if (field.key() == "delivery_token") {
        tagged["delivery_tag"] = 41 + static_cast<int64_t>(i);
      } else {
        tagged[field.key()] = field.value();
      }
    }
    messages.emplace_back(std::move(tagged));
  }
  EXPECT_EQ(MessagesFrame(12, "t", batch, 41), json::serialize(frame));
  json::object one;
  one["type"] = "message";
  one["subscription"] = 12;
  for (auto& field : messages[0].as_object()) one[field.key()] = field.value();
  EXPECT_EQ(MessageFrame(12, "t", batch[0], 41), json::serialize(one));
  // The largest tag a subscription could reach.
  json::value big = json::parse(MessageFrame(1, "t", batch[0], uint64_t{INT64_MAX}));
  EXPECT_EQ(big.at("delivery_tag").as_int64(), INT64_MAX);
}

TEST(WsFramesTest, PublishedFrameMatchesTheDom) {
  const std::vector<broker::PublishResult> results = {{0, 10, false}, {2, 11, true}};
  for (const char* request : {"", "17", "\"r-1\"", "{\"a\":[1,2]}"}) {
    json::object frame;
    frame["type"] = "published";
    if (*request != '\0') frame["request"] = json::parse(request);
    frame["results"] = PublishResultsToJson(results)["results"];
    EXPECT_EQ(PublishedFrame(request, results), json::serialize(frame)) << request;
  }
  EXPECT_EQ(PublishedFrame("", {}), "{\"type\":\"published\",\"results\":[]}");
}

TEST(WsFramesTest, HttpBodiesMatchTheDom) {
  std::vector<broker::Delivery> batch = {MakeDelivery("a\n"), MakeDelivery("b")};
  EXPECT_EQ(DeliveriesBody("t", batch), json::serialize(DeliveriesToJson("t", batch)));
  EXPECT_EQ(DeliveriesBody("t", {}), json::serialize(DeliveriesToJson("t", {})));
  const std::vector<broker::PublishResult> results = {{1, 5, false}, {0, 6, true}};
  EXPECT_EQ(PublishResultsBody(results), json::serialize(PublishResultsToJson(results)));
}

TEST(WsFramesTest, ErrorFrameTextMatchesTheDom) {
  const absl::Status status =
      ApiError(absl::StatusCode::kNotFound, "topic_not_found", "topic \"x\" not found");
  const json::value request = json::parse("{\"id\":\"r\"}");
  EXPECT_EQ(WsErrorFrameText(status, json::serialize(request)),
            json::serialize(WsErrorFrame(status, &request)));
  EXPECT_EQ(WsErrorFrameText(status, ""), json::serialize(WsErrorFrame(status, nullptr)));
  const json::object frame = WsErrorFrame(status, nullptr);
  EXPECT_EQ(frame.at("code").as_string(), "topic_not_found");
  EXPECT_EQ(frame.at("status").as_int64(), 404);
}

TEST(WsFramesTest, AppendJsonStringEscapesAndReplaces) {
  std::string out;
  AppendJsonString(&out, std::string("a\"\\\x02", 4));
  EXPECT_EQ(out, "\"a\\\"\\\\\\u0002\"");
  out.clear();
  AppendJsonString(&out, std::string("x\xc0y", 3));  // an invalid byte
  EXPECT_EQ(out, "\"x\xEF\xBF\xBDy\"");
  EXPECT_EQ(json::parse(out).as_string(), "x\xEF\xBF\xBDy");
}

TEST(WsFramesTest, EscapesAtEveryPositionOfLongStrings) {
  // The word-at-a-time scan must find an escape (or a non-ASCII byte) in
  // any of the 8 lanes, and in the tail after the last whole word.
  const std::vector<std::string> specials = {
      "\"", "\\", "\n", std::string(1, '\x1f'), std::string(1, '\0'), "\xC3\xA9", "\xE2\x82\xAC"};
  for (const std::string& special : specials) {
    for (size_t at = 0; at < 40; ++at) {
      std::string s(40, 'a');
      s.replace(at, 1, special);
      std::string out;
      AppendJsonString(&out, s);
      EXPECT_EQ(out, json::serialize(json::string(s))) << at;
    }
  }
  std::string bad(20, 'a');
  bad[17] = '\xff';  // invalid UTF-8 past the first two words
  EXPECT_FALSE(IsValidUtf8(bad));
  std::string out;
  AppendJsonString(&out, bad);
  EXPECT_EQ(out, "\"" + std::string(17, 'a') + "\xEF\xBF\xBD" + "aa\"");
}

TEST(WsFramesTest, RequestOfIgnoresNull) {
  const json::object with = json::parse("{\"request\":5}").as_object();
  const json::object null = json::parse("{\"request\":null}").as_object();
  ASSERT_NE(RequestOf(with), nullptr);
  EXPECT_EQ(RequestOf(with)->as_int64(), 5);
  EXPECT_EQ(RequestOf(null), nullptr);
  EXPECT_EQ(RequestOf(json::object()), nullptr);
}

}  // namespace
}  // namespace once::coordinator
