// The exactly-once batching settings in the group JSON
// (GroupConfigFromJson / GroupConfigToJson of coordinator/json_codec.h).
#include <optional>
#include <string>

#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

json::object Obj(absl::string_view text) {
  absl::StatusOr<json::object> o = ParseJsonObject(text, "test", false);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *o : json::object();
}

TEST(TxnGroupSettingsJsonTest, ReadsBothSettings) {
  ONCE_ASSERT_OK_AND_ASSIGN(
      broker::GroupConfig c,
      GroupConfigFromJson(
          Obj(R"({"guarantee": "exactly-once", "txn_batch_max": 250, "txn_linger_ms": 0})")));
  EXPECT_EQ(c.txn_batch_max, std::optional<int>(250));
  EXPECT_EQ(c.txn_linger_ms, std::optional<int64_t>(0));
}

TEST(TxnGroupSettingsJsonTest, AbsentAndNullAreUnset) {
  for (const char* body : {R"({"guarantee": "exactly-once"})",
                           R"({"guarantee": "exactly-once", "txn_batch_max": null,
                               "txn_linger_ms": null})"}) {
    SCOPED_TRACE(body);
    ONCE_ASSERT_OK_AND_ASSIGN(broker::GroupConfig c, GroupConfigFromJson(Obj(body)));
    EXPECT_FALSE(c.txn_batch_max.has_value());
    EXPECT_FALSE(c.txn_linger_ms.has_value());
  }
}

TEST(TxnGroupSettingsJsonTest, WrittenForExactlyOnceGroupsOnlyAndRoundTrips) {
  broker::GroupConfig c;
  c.guarantee = broker::Guarantee::kExactlyOnce;
  json::object unset = GroupConfigToJson(c);
  EXPECT_TRUE(unset.at("txn_batch_max").is_null());
  EXPECT_TRUE(unset.at("txn_linger_ms").is_null());
  ONCE_ASSERT_OK_AND_ASSIGN(broker::GroupConfig again, GroupConfigFromJson(unset));
  EXPECT_EQ(again, c);

  c.txn_batch_max = 7;
  c.txn_linger_ms = 15;
  json::object set = GroupConfigToJson(c);
  EXPECT_EQ(set.at("txn_batch_max").as_int64(), 7);
  EXPECT_EQ(set.at("txn_linger_ms").as_int64(), 15);
  ONCE_ASSERT_OK_AND_ASSIGN(again, GroupConfigFromJson(set));
  EXPECT_EQ(again, c);

  broker::GroupConfig plain;
  EXPECT_FALSE(GroupConfigToJson(plain).contains("txn_batch_max"));
  EXPECT_FALSE(GroupConfigToJson(plain).contains("txn_linger_ms"));
}

TEST(TxnGroupSettingsJsonTest, RefusesWrongTypesAndRangesNamingTheField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"txn_batch_max": 0})", "txn_batch_max"},
           Case{R"({"txn_batch_max": 10001})", "txn_batch_max"},
           Case{R"({"txn_batch_max": -5})", "txn_batch_max"},
           Case{R"({"txn_batch_max": "100"})", "txn_batch_max"},
           Case{R"({"txn_batch_max": 1.5})", "txn_batch_max"},
           Case{R"({"txn_batch_max": 1e30})", "txn_batch_max"},
           Case{R"({"txn_batch_max": [1]})", "txn_batch_max"},
           Case{R"({"txn_linger_ms": -1})", "txn_linger_ms"},
           Case{R"({"txn_linger_ms": 1001})", "txn_linger_ms"},
           Case{R"({"txn_linger_ms": false})", "txn_linger_ms"},
           Case{R"({"txn_linger_ms": {}})", "txn_linger_ms"},
       }) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<broker::GroupConfig> r = GroupConfigFromJson(Obj(c.body));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(ApiCodeOf(r.status()), "invalid_field");
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace once::coordinator
