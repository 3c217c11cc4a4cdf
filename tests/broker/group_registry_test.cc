// Creating, describing and deleting groups, and bad input of every kind.
#include "broker/group_registry.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using GroupRegistryTest = testing::GroupTest;

TEST_F(GroupRegistryTest, CreateIsIdempotentLikeTopics) {
  MakeTopic("t", 2, Backend::kDisk);
  GroupConfig c;
  EXPECT_THAT(registry_->CreateGroup("t", "g", c), testing::IsOkAndHolds(CreateOutcome::kCreated));
  EXPECT_THAT(registry_->CreateGroup("t", "g", c),
              testing::IsOkAndHolds(CreateOutcome::kAlreadyExists));
  GroupConfig other = c;
  other.max_deliveries = 9;
  EXPECT_THAT(registry_->CreateGroup("t", "g", other),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("max_deliveries")));
  ONCE_ASSERT_OK(registry_->CreateGroup("t", "h", other).status());
  EXPECT_THAT(registry_->ListGroups("t"), ElementsAre("g", "h"));
  // Settings survive a restart, and so does idempotence.
  OpenAll();
  EXPECT_THAT(registry_->CreateGroup("t", "h", other),
              testing::IsOkAndHolds(CreateOutcome::kAlreadyExists));
  ONCE_ASSERT_OK_AND_ASSIGN(GroupDescription d, registry_->DescribeGroup("t", "h"));
  EXPECT_EQ(d.config, other);
  EXPECT_EQ(d.dead_letter_topic, "t-dlq");
  EXPECT_EQ(d.partitions.size(), 2u);
}

TEST_F(GroupRegistryTest, UnknownTopicAndGroupAreNotFound) {
  EXPECT_THAT(registry_->CreateGroup("nope", "g", GroupConfig()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("topic \"nope\"")));
  EXPECT_THAT(registry_->GetGroup("nope", "g"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("topic \"nope\"")));
  MakeTopic("t", 1, Backend::kMemory);
  EXPECT_THAT(registry_->GetGroup("t", "g"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("group \"g\"")));
  EXPECT_THAT(registry_->DescribeGroup("t", "g"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_->DeleteGroup("t", "g"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GroupRegistryTest, InvalidSettingsNameTheSetting) {
  MakeTopic("t", 1, Backend::kMemory);
  struct Case {
    const char* setting;
    void (*mutate)(GroupConfig&);
  };
  const Case cases[] = {
      {"ack_timeout_ms", [](GroupConfig& c) { c.ack_timeout_ms = 0; }},
      {"max_deliveries", [](GroupConfig& c) { c.max_deliveries = 0; }},
      {"prefetch", [](GroupConfig& c) { c.prefetch = -1; }},
      {"session_timeout_ms", [](GroupConfig& c) { c.session_timeout_ms = 0; }},
      {"backoff_base_ms", [](GroupConfig& c) { c.backoff_base_ms = -5; }},
      {"backoff_max_ms", [](GroupConfig& c) { c.backoff_max_ms = 1; }},
      {"start", [](GroupConfig& c) { c.start = Position::Offset(-1); }},
      {"dead_letter_topic", [](GroupConfig& c) { c.dead_letter_topic = "bad/name"; }},
      {"dead_letter_topic", [](GroupConfig& c) { c.dead_letter_topic = "t"; }},
      {"mode", [](GroupConfig& c) { c.mode = static_cast<GroupMode>(9); }},
  };
  for (const Case& k : cases) {
    GroupConfig c;
    k.mutate(c);
    EXPECT_THAT(registry_->CreateGroup("t", "g", c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(k.setting)))
        << k.setting;
  }
  for (const char* bad : {"", ".", "..", "__x", "a b", "a/b"}) {
    EXPECT_THAT(registry_->CreateGroup("t", bad, GroupConfig()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group name")))
        << bad;
  }
  EXPECT_TRUE(registry_->ListGroups("t").empty());
}

TEST_F(GroupRegistryTest, BadConsumerAndFetchArguments) {
  MakeTopic("t", 1, Backend::kMemory);
  auto g = MakeGroup("t", "g", GroupConfig());
  EXPECT_THAT(g->Fetch("", 1), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("consumer")));
  EXPECT_THAT(g->Fetch("a b", 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(g->Fetch("c", 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max")));
  EXPECT_THAT(g->Fetch("c", kMaxFetch + 1), StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<std::string> many(kMaxTokensPerCall + 1, "x");
  EXPECT_THAT(g->Ack(many), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(g->Leave("ghost"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GroupRegistryTest, DeleteGroupFreesTheNameAndItsState) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 3);
  auto g = MakeGroup("t", "g", GroupConfig());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 3));
  ONCE_ASSERT_OK(g->Ack(Tokens(ds)).status());
  ONCE_ASSERT_OK(registry_->DeleteGroup("t", "g"));
  EXPECT_THAT(g->Ack(Tokens(ds)), StatusIs(absl::StatusCode::kNotFound));
  auto fresh = MakeGroup("t", "g", GroupConfig());
  EXPECT_EQ(fresh->Describe().acked, 0);
  EXPECT_NE(fresh->incarnation(), g->incarnation());
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, fresh->Fetch("c", 10));
  EXPECT_EQ(again.size(), 3u);
}

TEST_F(GroupRegistryTest, DeletedTopicTakesItsGroups) {
  MakeTopic("t", 1, Backend::kMemory);
  MakeGroup("t", "g", GroupConfig());
  ONCE_ASSERT_OK(broker_->DeleteTopic("t"));
  EXPECT_THAT(registry_->GetGroup("t", "g"), StatusIs(absl::StatusCode::kNotFound));
  MakeTopic("t", 1, Backend::kMemory);
  EXPECT_TRUE(registry_->ListGroups("t").empty());
}

TEST_F(GroupRegistryTest, TickRunsDeadlinesOfEveryGroup) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 1);
  GroupConfig c;
  c.ack_timeout_ms = 1000;
  c.max_deliveries = 1;
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  clock_.Advance(1000);
  ONCE_ASSERT_OK(registry_->Tick());
  EXPECT_EQ(g->Describe().dead_lettered, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto dlq, broker_->GetTopic("t-dlq"));
  EXPECT_EQ(dlq->partition(0)->NextOffset(), 1);
}

}  // namespace
}  // namespace once::broker
