#include "coordinator/service_options.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseListenAddressTest, Accepts) {
  ONCE_ASSERT_OK_AND_ASSIGN(ListenAddress a, ParseListenAddress("127.0.0.1:8080"));
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8080);
  ONCE_ASSERT_OK_AND_ASSIGN(a, ParseListenAddress("0.0.0.0:0"));
  EXPECT_EQ(a.port, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(a, ParseListenAddress("[::1]:65535"));
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 65535);
}

TEST(ParseListenAddressTest, RefusesWithTheReason) {
  for (const char* text :
       {"", "8080", "localhost:8080", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:+80", "127.0.0.1:http", "[::1]8080", "[::1", "::1:80", "1.2.3:80"}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ParseListenAddress(text), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(ValidateServiceOptionsTest, DefaultsAreValid) {
  EXPECT_THAT(ValidateServiceOptions(ServiceOptions()), IsOk());
  EXPECT_EQ(ServiceOptions().data_dir, "./data");
  EXPECT_EQ(ServiceOptions().listen, "127.0.0.1:8080");
}

TEST(ValidateServiceOptionsTest, NamesTheBadSetting) {
  ServiceOptions o;
  o.limits.max_connections = 0;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_connections")));
  o = ServiceOptions();
  o.limits.idle_timeout_ms = 5;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("idle_timeout_ms")));
  o = ServiceOptions();
  o.worker_threads = 0;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("worker_threads")));
  o = ServiceOptions();
  o.append_threads = 65;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("append_threads")));
  o = ServiceOptions();
  o.default_topic.partitions = 0;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("default topic settings")));
  o = ServiceOptions();
  o.listen = "nowhere";
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nowhere")));
  o = ServiceOptions();
  o.data_dir = "";
  EXPECT_THAT(ValidateServiceOptions(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidateServiceOptionsTest, TxnBatchingDefaultsHaveTheGroupSettingsRanges) {
  ServiceOptions o;
  EXPECT_EQ(o.txn_linger_ms, 0);
  for (int64_t linger : {int64_t{-1}, int64_t{1001}}) {
    o.txn_linger_ms = linger;
    EXPECT_THAT(ValidateServiceOptions(o),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("txn_linger_ms")));
  }
  o = ServiceOptions();
  o.txn_linger_ms = 1000;
  EXPECT_THAT(ValidateServiceOptions(o), ::once::testing::IsOk());
  o.txn_batch_max = 10'001;
  EXPECT_THAT(ValidateServiceOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("txn_batch_max")));
  EXPECT_THAT(DescribeOptions(ServiceOptions()), HasSubstr("txn_linger_ms = 0\n"));
}

TEST(ValidateServiceOptionsTest, GroupCommitIntervalIsZeroToOneSecond) {
  ServiceOptions o;
  EXPECT_EQ(o.group_commit_interval_ms, 0);
  for (int64_t interval : {int64_t{-1}, int64_t{1001}}) {
    o.group_commit_interval_ms = interval;
    EXPECT_THAT(ValidateServiceOptions(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("group_commit_interval_ms")));
  }
  for (int64_t interval : {int64_t{0}, int64_t{1000}}) {
    o.group_commit_interval_ms = interval;
    EXPECT_THAT(ValidateServiceOptions(o), ::once::testing::IsOk());
  }
  EXPECT_THAT(DescribeOptions(ServiceOptions()), HasSubstr("group_commit_interval_ms = 0\n"));
}

TEST(DescribeOptionsTest, ListsEverySetting) {
  ServiceOptions o;
  o.data_dir = "/srv/once";
  const std::string text = DescribeOptions(o);
  EXPECT_THAT(text, HasSubstr("data_dir = /srv/once\n"));
  EXPECT_THAT(text, HasSubstr("listen = 127.0.0.1:8080\n"));
  EXPECT_THAT(text, HasSubstr("max_connections = 1024\n"));
  EXPECT_THAT(text, HasSubstr("default_backend = disk\n"));
}

TEST(CorruptionPolicyTest, ParsesAndNames) {
  ONCE_ASSERT_OK_AND_ASSIGN(broker::CorruptionPolicy p, ParseCorruptionPolicy("truncate"));
  EXPECT_EQ(CorruptionPolicyName(p), "truncate");
  EXPECT_THAT(ParseCorruptionPolicy("ignore"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace once::coordinator
