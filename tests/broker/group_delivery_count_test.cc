// Delivery counts of redeliveries are durable before the redelivery is
// handed out (disk topics), so a restart can never make a message go out
// more than max_deliveries times; first deliveries cost no write.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

constexpr int64_t kAckTimeoutMs = 1000;

class GroupDeliveryCountTest : public testing::GroupTest,
                               public ::testing::WithParamInterface<GroupMode> {
 protected:
  static GroupConfig Config(int max_deliveries) {
    GroupConfig c;
    c.mode = GetParam();
    c.ack_timeout_ms = kAckTimeoutMs;
    c.max_deliveries = max_deliveries;
    c.backoff_base_ms = 0;  // a timed-out message is due again at once
    c.prefetch = 100;
    return c;
  }

  int64_t Commits() const { return registry_->store()->stats().commits; }

  // A one-partition disk topic "t" with `messages` published, and an
  // exactly-once group "g" on it (the coordinator's Lease path).
  std::shared_ptr<ConsumerGroup> ExactlyOnceGroup(int messages) {
    MakeTopic("t", 1, Backend::kDisk);
    Publish("t", messages);
    GroupConfig c = Config(/*max_deliveries=*/5);
    c.guarantee = Guarantee::kExactlyOnce;
    return MakeGroup("t", "g", c);
  }

  // Fetches offset 0 of "t" (a one-partition topic) and lets its lease
  // time out, `times` times; checks the counts 1..times on the way.
  void DeliverAndTimeOut(ConsumerGroup& g, int times) {
    for (int attempt = 1; attempt <= times; ++attempt) {
      ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g.Fetch("c", 1));
      ASSERT_EQ(ds.size(), 1u) << "attempt " << attempt;
      EXPECT_EQ(ds[0].record.offset, 0);
      EXPECT_EQ(ds[0].delivery_count, attempt);
      clock_.Advance(kAckTimeoutMs + 1);
    }
  }

  std::vector<Record> DeadLetters() {
    auto dlq = broker_->GetTopic("t-dlq");
    if (!dlq.ok()) return {};
    auto rs = (*dlq)->Read(0, 0, ReadLimits{});
    EXPECT_THAT(rs, ::once::testing::IsOk());
    return rs.ok() ? *rs : std::vector<Record>();
  }
};

TEST_P(GroupDeliveryCountTest, RedeliveryCountSurvivesRestartWithoutAckOrTick) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 1);
  auto g = MakeGroup("t", "g", Config(/*max_deliveries=*/5));
  ASSERT_NE(g, nullptr);
  DeliverAndTimeOut(*g, 2);  // deliveries 1 and 2; no ack, no Tick
  g.reset();
  OpenAll();  // as after a crash: nothing but Fetch ran since creation

  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, reopened->Fetch("c", 10));
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].record.value, "m0");
  EXPECT_EQ(ds[0].delivery_count, 3);
  EXPECT_TRUE(DeadLetters().empty());
}

TEST_P(GroupDeliveryCountTest, MaxDeliveriesHoldsAcrossRestart) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 2);
  auto g = MakeGroup("t", "g", Config(/*max_deliveries=*/2));
  ASSERT_NE(g, nullptr);
  DeliverAndTimeOut(*g, 2);
  g.reset();
  OpenAll();

  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  // Offset 0 went out twice: it is dead-lettered, not delivered a third
  // time; offset 1 is delivered.
  std::vector<Delivery> all;
  for (int round = 0; round < 5 && all.size() < 2; ++round) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, reopened->Fetch("c", 10));
    for (Delivery& d : ds) {
      EXPECT_NE(d.record.offset, 0) << "delivered a third time, count " << d.delivery_count;
      all.push_back(std::move(d));
    }
    if (ds.empty()) break;
  }
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].record.offset, 1);
  std::vector<Record> letters = DeadLetters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(HeaderOf(letters[0], kHeaderOriginOffset), "0");
  EXPECT_EQ(HeaderOf(letters[0], kHeaderReason), kReasonMaxDeliveries);
  EXPECT_EQ(HeaderOf(letters[0], kHeaderDeliveryCount), "2");
  EXPECT_EQ(reopened->Describe().dead_lettered, 1);
}

// The coordinator's path: Lease, an abort's Nack(kRequeue), Lease again.
TEST_P(GroupDeliveryCountTest, LeaseAfterRequeueSurvivesRestart) {
  auto g = ExactlyOnceGroup(/*messages=*/1);
  ASSERT_NE(g, nullptr);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Lease("participant", 1));
    ASSERT_EQ(ds.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(ds[0].delivery_count, attempt);
    ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Nack({ds[0].token}, NackAction::kRequeue));
    EXPECT_EQ(r.applied, 1);
  }
  g.reset();
  OpenAll();
  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, reopened->Lease("participant", 1));
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].delivery_count, 3);
}

// LeaseHandles(alone_from): a shared group hands a due redelivery that
// reaches that count out alone; an ordered group keeps its order (and
// its batches).
TEST_P(GroupDeliveryCountTest, ARedeliveryThatReachesAloneFromIsLeasedAlone) {
  auto g = ExactlyOnceGroup(/*messages=*/4);
  ASSERT_NE(g, nullptr);
  constexpr int kAloneFrom = 3;
  auto requeue = [&](const std::vector<Delivery>& ds) {
    std::vector<DeliveryToken> handles;
    for (const Delivery& d : ds) handles.push_back(d.handle);
    ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->NackHandles(handles, NackAction::kRequeue));
    EXPECT_EQ(r.applied, static_cast<int>(ds.size()));
  };
  for (int attempt = 1; attempt < kAloneFrom; ++attempt) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->LeaseHandles("p", 10, kAloneFrom));
    ASSERT_EQ(ds.size(), 4u) << "attempt " << attempt;
    for (const Delivery& d : ds) EXPECT_EQ(d.delivery_count, attempt);
    requeue(ds);
  }
  std::vector<int64_t> offsets;
  for (int lease = 0; lease < 4 && offsets.size() < 4; ++lease) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->LeaseHandles("p", 10, kAloneFrom));
    ASSERT_FALSE(ds.empty());
    EXPECT_EQ(ds.size(), GetParam() == GroupMode::kShared ? 1u : 4u);
    for (const Delivery& d : ds) {
      EXPECT_EQ(d.delivery_count, kAloneFrom);
      offsets.push_back(d.record.offset);
    }
  }
  EXPECT_THAT(offsets, ::testing::UnorderedElementsAre(0, 1, 2, 3));
}

TEST_P(GroupDeliveryCountTest, FirstDeliveriesWriteNothingRedeliveriesWriteOnce) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config(/*max_deliveries=*/5));
  ASSERT_NE(g, nullptr);
  const int64_t before = Commits();
  ONCE_ASSERT_OK_AND_ASSIGN(auto first, g->Fetch("c", 10));
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(Commits(), before) << "a first delivery must not write";
  clock_.Advance(kAckTimeoutMs + 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->Fetch("c", 10));
  ASSERT_EQ(again.size(), 3u);
  for (const Delivery& d : again) EXPECT_EQ(d.delivery_count, 2);
  EXPECT_EQ(Commits(), before + 1) << "the redeliveries' counts go in one transaction";
  // Nothing is left dirty: an ack writes only what it settles, and a
  // restart now sees every count.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack({again[1].token}));
  EXPECT_EQ(r.applied, 1);
  g.reset();
  OpenAll();
  ONCE_ASSERT_OK_AND_ASSIGN(auto reopened, registry_->GetGroup("t", "g"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto after, reopened->Fetch("c", 10));
  std::vector<int64_t> offsets;
  for (const Delivery& d : after) {
    offsets.push_back(d.record.offset);
    EXPECT_EQ(d.delivery_count, 3) << "offset " << d.record.offset;
  }
  if (GetParam() == GroupMode::kShared) {
    EXPECT_THAT(offsets, ::testing::ElementsAre(0, 2));
  } else {
    // The ack of offset 1 committed past 0 too (acks are cumulative).
    EXPECT_THAT(offsets, ::testing::ElementsAre(2));
  }
}

TEST_P(GroupDeliveryCountTest, MemoryGroupsStayInRam) {
  MakeTopic("t", 1, Backend::kMemory);
  Publish("t", 1);
  auto g = MakeGroup("t", "g", Config(/*max_deliveries=*/5));
  ASSERT_NE(g, nullptr);
  const int64_t before = Commits();
  DeliverAndTimeOut(*g, 3);
  EXPECT_EQ(Commits(), before);
}

INSTANTIATE_TEST_SUITE_P(Modes, GroupDeliveryCountTest,
                         ::testing::Values(GroupMode::kShared, GroupMode::kOrdered),
                         [](const ::testing::TestParamInfo<GroupMode>& info) {
                           return std::string(GroupModeName(info.param));
                         });

}  // namespace
}  // namespace once::broker
