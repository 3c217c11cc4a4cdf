#include "broker/group_ordered.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "broker/group_dead_letter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class OrderedGroupTest : public testing::GroupTest, public ::testing::WithParamInterface<Backend> {
 protected:
  GroupConfig Config() {
    GroupConfig c;
    c.mode = GroupMode::kOrdered;
    c.ack_timeout_ms = 10'000;
    c.session_timeout_ms = 30'000;
    c.max_deliveries = 3;
    c.prefetch = 1000;
    c.backoff_base_ms = 100;
    c.backoff_max_ms = 1000;
    return c;
  }

  // Publishes n keyed messages: key "k<i % keys>", value "<key>:<i>".
  void PublishKeyed(const std::string& topic, int n, int keys) {
    auto t = *broker_->GetTopic(topic);
    std::vector<Record> records;
    for (int i = 0; i < n; ++i) {
      Record r;
      r.key = absl::StrCat("k", i % keys);
      r.flags = kRecordHasKey;
      r.value = absl::StrCat(r.key, ":", i);
      records.push_back(std::move(r));
    }
    ASSERT_THAT(t->Publish(std::move(records)), ::once::testing::IsOk());
  }

  static std::set<int> Partitions(const std::vector<Delivery>& ds) {
    std::set<int> ps;
    for (const Delivery& d : ds) ps.insert(d.partition);
    return ps;
  }
};

TEST_P(OrderedGroupTest, PerPartitionOrderIsKept) {
  MakeTopic("t", 3, GetParam());
  PublishKeyed("t", 300, 10);
  auto g = MakeGroup("t", "g", Config());
  std::map<int, int64_t> last_offset;
  std::map<std::string, int> last_of_key;
  int total = 0;
  for (int round = 0; round < 100; ++round) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 17));
    if (ds.empty()) break;
    for (const Delivery& d : ds) {
      auto it = last_offset.find(d.partition);
      if (it != last_offset.end()) {
        EXPECT_EQ(d.record.offset, it->second + 1);
      }
      last_offset[d.partition] = d.record.offset;
      int i = std::stoi(d.record.value.substr(d.record.value.find(':') + 1));
      auto k = last_of_key.find(d.record.key);
      if (k != last_of_key.end()) {
        EXPECT_LT(k->second, i) << d.record.key;
      }
      last_of_key[d.record.key] = i;
      ++total;
    }
    ONCE_ASSERT_OK(g->Ack(Tokens(ds)).status());
  }
  EXPECT_EQ(total, 300);
  EXPECT_EQ(g->Describe().lag, 0);
}

TEST_P(OrderedGroupTest, EachPartitionHasExactlyOneConsumer) {
  MakeTopic("t", 4, GetParam());
  Publish("t", 40);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK(g->Join("a"));
  ONCE_ASSERT_OK(g->Join("b"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto da, g->Fetch("a", 100));
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, g->Fetch("b", 100));
  EXPECT_THAT(Partitions(da), ElementsAre(0, 2));
  EXPECT_THAT(Partitions(db), ElementsAre(1, 3));
  EXPECT_EQ(da.size() + db.size(), 40u);
  GroupDescription d = g->Describe();
  ASSERT_EQ(d.consumers.size(), 2u);
  EXPECT_THAT(d.consumers[0].partitions, ElementsAre(0, 2));
  EXPECT_EQ(d.partitions[1].owner, "b");
}

TEST_P(OrderedGroupTest, JoinRebalancesAndFencesOldGeneration) {
  MakeTopic("t", 2, GetParam());
  Publish("t", 10);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto da, g->Fetch("a", 100));
  EXPECT_EQ(da.size(), 10u);
  const uint32_t gen = g->Describe().generation;
  ONCE_ASSERT_OK(g->Join("b"));  // rebalance: a keeps 0, b gets 1
  EXPECT_EQ(g->Describe().generation, gen + 1);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack(Tokens(da)));
  EXPECT_EQ(r.applied, 0);
  ASSERT_EQ(r.refused.size(), 10u);
  EXPECT_THAT(r.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("generation")));
  // Nothing was committed: both resume from offset 0 of their partition.
  ONCE_ASSERT_OK_AND_ASSIGN(auto da2, g->Fetch("a", 100));
  ONCE_ASSERT_OK_AND_ASSIGN(auto db2, g->Fetch("b", 100));
  EXPECT_THAT(Partitions(da2), ElementsAre(0));
  EXPECT_THAT(Partitions(db2), ElementsAre(1));
  EXPECT_EQ(da2.front().record.offset, 0);
  EXPECT_EQ(db2.front().record.offset, 0);
  EXPECT_EQ(da2.front().delivery_count, 2);
}

TEST_P(OrderedGroupTest, LeaveAndSessionTimeoutRebalance) {
  MakeTopic("t", 2, GetParam());
  Publish("t", 4);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK(g->Join("a"));
  ONCE_ASSERT_OK(g->Join("b"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, g->Fetch("b", 1));
  ONCE_ASSERT_OK(g->Ack(Tokens(db)).status());  // b commits partition 1 past offset 0
  ONCE_ASSERT_OK(g->Leave("b"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto da, g->Fetch("a", 100));
  EXPECT_THAT(Partitions(da), ElementsAre(0, 1));
  EXPECT_EQ(da.size(), 3u);  // partition 1 resumes from its committed offset
  EXPECT_THAT(g->Leave("b"), StatusIs(absl::StatusCode::kNotFound));
  // c joins, then a falls silent past the session timeout.
  ONCE_ASSERT_OK(g->Join("c"));
  clock_.Advance(20'000);
  ONCE_ASSERT_OK(g->Heartbeat("c"));
  clock_.Advance(10'001);
  ONCE_ASSERT_OK(g->Tick());
  GroupDescription d = g->Describe();
  ASSERT_EQ(d.consumers.size(), 1u);
  EXPECT_EQ(d.consumers[0].id, "c");
  EXPECT_THAT(d.consumers[0].partitions, ElementsAre(0, 1));
  EXPECT_THAT(g->Heartbeat("a"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(OrderedGroupTest, AckCommitsCumulativelyAndConsumerResumes) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 10);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("a", 5));
  ASSERT_EQ(ds.size(), 5u);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack({ds[3].token}));
  EXPECT_EQ(r.applied, 1);
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 4);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult old, g->Ack({ds[1].token}));
  ASSERT_EQ(old.refused.size(), 1u);
  EXPECT_THAT(old.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already committed")));
  // A new consumer takes over after a leave and resumes at 4.
  ONCE_ASSERT_OK(g->Leave("a"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, g->Fetch("b", 100));
  ASSERT_EQ(db.size(), 6u);
  EXPECT_EQ(db[0].record.offset, 4);
}

TEST_P(OrderedGroupTest, AckTimeoutRewindsAndMaxDeliveriesDeadLetters) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config());
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("a", 1));
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].record.offset, 0);
    EXPECT_EQ(ds[0].delivery_count, attempt);
    clock_.Advance(10'000);
    ONCE_ASSERT_OK(g->Heartbeat("a"));
    ONCE_ASSERT_OK_AND_ASSIGN(auto backoff, g->Fetch("a", 1));
    EXPECT_TRUE(backoff.empty()) << "attempt " << attempt;
    clock_.Advance(1000);
  }
  // Offset 0 went to the dead-letter topic; the partition moves on.
  ONCE_ASSERT_OK_AND_ASSIGN(auto next, g->Fetch("a", 10));
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].record.offset, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto dlq, broker_->GetTopic("t-dlq"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto letters, dlq->Read(0, 0, ReadLimits{}));
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(HeaderOf(letters[0], kHeaderOriginOffset), "0");
  EXPECT_EQ(HeaderOf(letters[0], kHeaderDeliveryCount), "3");
  EXPECT_EQ(g->Describe().dead_lettered, 1);
}

TEST_P(OrderedGroupTest, NackRequeueRewindsToTheMessage) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 5);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("a", 5));
  ONCE_ASSERT_OK(g->Ack({ds[1].token}).status());
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Nack({ds[3].token}, NackAction::kRequeue));
  EXPECT_EQ(r.applied, 1);
  // ds[4] was delivered after the nacked one: its token is now stale.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult stale, g->Ack({ds[4].token}));
  EXPECT_EQ(stale.applied, 0);
  clock_.Advance(100);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->Fetch("a", 5));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].record.offset, 3);
  EXPECT_EQ(again[0].delivery_count, 2);
  EXPECT_EQ(again[1].delivery_count, 2);
}

TEST_P(OrderedGroupTest, NackDeadLetterSkipsOneMessage) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("a", 3));
  ONCE_ASSERT_OK(g->Nack({ds[1].token}, NackAction::kDeadLetter).status());
  ONCE_ASSERT_OK(g->Ack({ds[0].token}).status());
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 2);  // 0 acked, 1 dead-lettered
  ONCE_ASSERT_OK(g->Ack({ds[2].token}).status());
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 3);
}

TEST_P(OrderedGroupTest, ResetToEarliestLatestOffsetAndTime) {
  MakeTopic("t", 1, GetParam());
  for (int i = 0; i < 4; ++i) {
    Publish("t", 1);
    clock_.Advance(1000);
  }
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto all, g->Fetch("a", 10));
  ASSERT_EQ(all.size(), 4u);
  ONCE_ASSERT_OK(g->Ack({all[3].token}).status());
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 4);

  ONCE_ASSERT_OK(g->Reset(Position::Earliest(), -1));
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(auto e, g->Fetch("a", 10));
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].record.offset, 0);

  ONCE_ASSERT_OK(g->Reset(Position::Offset(2), 0));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult fenced, g->Ack({e[3].token}));
  EXPECT_EQ(fenced.applied, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(auto o, g->Fetch("a", 10));
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].record.offset, 2);

  ONCE_ASSERT_OK(g->Reset(Position::Time(all[1].record.timestamp_ms), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto t, g->Fetch("a", 10));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].record.offset, 1);

  ONCE_ASSERT_OK(g->Reset(Position::Latest(), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto l, g->Fetch("a", 10));
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(g->Describe().lag, 0);

  ONCE_ASSERT_OK(g->Reset(Position::Offset(1'000), -1));  // clamped to the end
  EXPECT_EQ(g->Describe().partitions[0].done_floor, 4);
}

TEST_P(OrderedGroupTest, PrefetchBoundsUnackedDeliveries) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 20);
  GroupConfig c = Config();
  c.prefetch = 4;
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("a", 100));
  EXPECT_EQ(ds.size(), 4u);
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, g->Fetch("a", 100));
  EXPECT_TRUE(none.empty());
  ONCE_ASSERT_OK(g->Ack({ds[1].token}).status());
  ONCE_ASSERT_OK_AND_ASSIGN(auto more, g->Fetch("a", 100));
  EXPECT_EQ(more.size(), 2u);
}

TEST_P(OrderedGroupTest, HandlesCommitAsTheirTokensWould) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 4);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->FetchHandles("c1", 4));
  ASSERT_EQ(ds.size(), 4u);
  for (const Delivery& d : ds) EXPECT_TRUE(d.token.empty());
  // Acking the second commits past it (the first is covered).
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->AckHandles({ds[1].handle}));
  EXPECT_EQ(r.applied, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({ds[0].handle}));
  EXPECT_THAT(r.ToStatus(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // A nack rewinds to the third: it and the fourth come again.
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->NackHandles({ds[2].handle}, NackAction::kRequeue));
  EXPECT_EQ(r.applied, 1);
  clock_.Advance(1'000);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->FetchHandles("c1", 4));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].handle.offset, ds[2].handle.offset);
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({again[1].handle}));
  EXPECT_EQ(r.applied, 1);
  EXPECT_EQ(g->Describe().lag, 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, OrderedGroupTest,
                         ::testing::Values(Backend::kMemory, Backend::kDisk),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(BackendName(info.param));
                         });

}  // namespace
}  // namespace once::broker
