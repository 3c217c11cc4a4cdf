#include "broker/topic_config.h"

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TopicConfigTest, DefaultsAreValid) { EXPECT_THAT(ValidateTopicConfig(TopicConfig{}), IsOk()); }

struct BadConfigCase {
  std::string label;
  std::function<void(TopicConfig&)> mutate;
  std::string setting;  // must be named in the error
};

class BadTopicConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadTopicConfigTest, IsRejectedNamingTheSetting) {
  TopicConfig c;
  GetParam().mutate(c);
  EXPECT_THAT(ValidateTopicConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().setting)));
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadTopicConfigTest,
    ::testing::Values(
        BadConfigCase{"ZeroPartitions", [](TopicConfig& c) { c.partitions = 0; }, "partitions"},
        BadConfigCase{"NegativePartitions", [](TopicConfig& c) { c.partitions = -3; },
                      "partitions"},
        BadConfigCase{"TooManyPartitions",
                      [](TopicConfig& c) { c.partitions = kMaxPartitions + 1; }, "partitions"},
        BadConfigCase{"UnknownBackend", [](TopicConfig& c) { c.backend = static_cast<Backend>(9); },
                      "backend"},
        BadConfigCase{"UnknownFsync", [](TopicConfig& c) { c.fsync = static_cast<FsyncPolicy>(0); },
                      "fsync"},
        BadConfigCase{"ZeroFsyncInterval", [](TopicConfig& c) { c.fsync_interval_ms = 0; },
                      "fsync_interval_ms"},
        BadConfigCase{"ZeroRetentionMs", [](TopicConfig& c) { c.retention_ms = 0; },
                      "retention_ms"},
        BadConfigCase{"ZeroRetentionBytes", [](TopicConfig& c) { c.retention_bytes = 0; },
                      "retention_bytes"},
        BadConfigCase{"ZeroMaxMessageBytes", [](TopicConfig& c) { c.max_message_bytes = 0; },
                      "max_message_bytes"},
        BadConfigCase{"HugeMaxMessageBytes",
                      [](TopicConfig& c) { c.max_message_bytes = kMaxMessageBytesLimit + 1; },
                      "max_message_bytes"},
        BadConfigCase{"NegativeDedupWindow", [](TopicConfig& c) { c.dedup_window_ms = -1; },
                      "dedup_window_ms"},
        BadConfigCase{"ZeroDedupEntries", [](TopicConfig& c) { c.dedup_max_entries = 0; },
                      "dedup_max_entries"},
        BadConfigCase{"TinySegment", [](TopicConfig& c) { c.segment_bytes = 4095; },
                      "segment_bytes"},
        BadConfigCase{"HugeSegment", [](TopicConfig& c) { c.segment_bytes = int64_t{1} << 40; },
                      "segment_bytes"}),
    [](const ::testing::TestParamInfo<BadConfigCase>& info) { return info.param.label; });

TEST(TopicConfigTest, BoundaryValuesAreAccepted) {
  TopicConfig c;
  c.partitions = kMaxPartitions;
  c.max_message_bytes = kMaxMessageBytesLimit;
  c.segment_bytes = 4096;
  c.dedup_window_ms = 0;  // disables dedup
  c.dedup_max_entries = 1;
  c.retention_ms = 1;
  c.retention_bytes = 1;
  EXPECT_THAT(ValidateTopicConfig(c), IsOk());
  c.partitions = 1;
  c.retention_ms = -1;
  c.retention_bytes = -1;
  EXPECT_THAT(ValidateTopicConfig(c), IsOk());
}

TEST(TopicNameTest, GoodNamesAreAccepted) {
  for (const std::string& name :
       {std::string("orders"), std::string("a"), std::string("A.b_c-9"), std::string(".hidden"),
        std::string("_x"), std::string("x__y"), std::string("orders-dlq"), std::string(200, 'n')}) {
    EXPECT_THAT(ValidateTopicName(name), IsOk()) << name;
  }
}

TEST(TopicNameTest, BadNamesAreRejected) {
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("/abs"), std::string("__x"), std::string("__"), std::string(201, 'n'),
        std::string("sp ace"), std::string("nul\0byte", 8), std::string("caf\xc3\xa9"),
        std::string("a\\b"), std::string("#creating-x"), std::string("lost+found")}) {
    EXPECT_THAT(ValidateTopicName(name), StatusIs(absl::StatusCode::kInvalidArgument))
        << "name: " << name;
  }
}

TEST(TopicNameTest, ErrorSaysWhy) {
  EXPECT_THAT(ValidateTopicName("a/b"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("outside [A-Za-z0-9._-] at 1")));
  EXPECT_THAT(ValidateTopicName(std::string(201, 'n')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not 201")));
  EXPECT_THAT(ValidateTopicName("__x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserved")));
}

TEST(TopicConfigNamesTest, RoundTrip) {
  for (Backend b : {Backend::kMemory, Backend::kDisk}) {
    ONCE_ASSERT_OK_AND_ASSIGN(Backend parsed, ParseBackend(BackendName(b)));
    EXPECT_EQ(parsed, b);
  }
  for (FsyncPolicy p : {FsyncPolicy::kAlways, FsyncPolicy::kInterval, FsyncPolicy::kNever}) {
    ONCE_ASSERT_OK_AND_ASSIGN(FsyncPolicy parsed, ParseFsyncPolicy(FsyncPolicyName(p)));
    EXPECT_EQ(parsed, p);
  }
  EXPECT_EQ(BackendName(Backend::kMemory), "memory");
  EXPECT_EQ(FsyncPolicyName(FsyncPolicy::kInterval), "interval");
  EXPECT_THAT(ParseBackend("Disk"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"Disk\"")));
  EXPECT_THAT(ParseFsyncPolicy("sometimes"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace once::broker
