#include "broker/group_shared.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/group_dead_letter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::HasSubstr;

class SharedGroupTest : public testing::GroupTest, public ::testing::WithParamInterface<Backend> {
 protected:
  GroupConfig Config() {
    GroupConfig c;
    c.mode = GroupMode::kShared;
    c.ack_timeout_ms = 10'000;
    c.max_deliveries = 3;
    c.prefetch = 1000;
    c.backoff_base_ms = 100;
    c.backoff_max_ms = 1000;
    return c;
  }
};

TEST_P(SharedGroupTest, EveryMessageDeliveredOnceWhenAllAck) {
  MakeTopic("t", 4, GetParam());
  Publish("t", 200);
  auto g = MakeGroup("t", "g", Config());
  std::multiset<std::string> seen;
  for (int round = 0; round < 100; ++round) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c1", 7));
    if (ds.empty()) break;
    for (const Delivery& d : ds) {
      seen.insert(d.record.value);
      EXPECT_EQ(d.delivery_count, 1);
    }
    ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack(Tokens(ds)));
    EXPECT_EQ(r.applied, static_cast<int64_t>(ds.size()));
    ONCE_EXPECT_OK(r.ToStatus());
  }
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 200u);
  GroupDescription d = g->Describe();
  EXPECT_EQ(d.lag, 0);
  EXPECT_EQ(d.leased, 0);
  EXPECT_EQ(d.acked, 200);
  // Nothing more, even after every timeout.
  clock_.Advance(1'000'000);
  ONCE_ASSERT_OK_AND_ASSIGN(auto rest, g->Fetch("c1", 100));
  EXPECT_TRUE(rest.empty());
}

TEST_P(SharedGroupTest, ConsumersShareFairlyAcrossPartitions) {
  MakeTopic("t", 3, GetParam());
  Publish("t", 600);
  auto g = MakeGroup("t", "g", Config());
  const int kConsumers = 4;
  std::vector<int> got(kConsumers, 0);
  std::map<int, int> per_partition;
  bool more = true;
  while (more) {
    more = false;
    for (int c = 0; c < kConsumers; ++c) {
      ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch(absl::StrCat("c", c), 10));
      got[c] += static_cast<int>(ds.size());
      for (const Delivery& d : ds) ++per_partition[d.partition];
      if (!ds.empty()) more = true;
      ONCE_ASSERT_OK(g->Ack(Tokens(ds)).status());
    }
  }
  for (int c = 0; c < kConsumers; ++c) {
    // 600 / 4 = 150 each; turns of 10 bound the imbalance by one turn.
    EXPECT_GE(got[c], 140) << "consumer " << c;
    EXPECT_LE(got[c], 160) << "consumer " << c;
  }
  for (const auto& [p, n] : per_partition) EXPECT_EQ(n, 200) << "partition " << p;
}

TEST_P(SharedGroupTest, FetchSpreadsRoundRobinOverPartitions) {
  MakeTopic("t", 4, GetParam());
  Publish("t", 40);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 8));
  std::map<int, int> per_partition;
  for (const Delivery& d : ds) ++per_partition[d.partition];
  ASSERT_EQ(per_partition.size(), 4u);
  for (const auto& [p, n] : per_partition) EXPECT_EQ(n, 2);
}

TEST_P(SharedGroupTest, NackRequeueComesBackWithCountPlusOne) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  ASSERT_EQ(ds.size(), 1u);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Nack({ds[0].token}, NackAction::kRequeue));
  EXPECT_EQ(r.applied, 1);
  // During the backoff the next messages come first.
  ONCE_ASSERT_OK_AND_ASSIGN(auto during, g->Fetch("c", 10));
  ASSERT_EQ(during.size(), 2u);
  EXPECT_EQ(during[0].record.offset, 1);
  clock_.Advance(100);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->Fetch("c", 10));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].record.offset, 0);
  EXPECT_EQ(again[0].delivery_count, 2);
  EXPECT_EQ(again[0].record.value, "m0");
}

TEST_P(SharedGroupTest, AckTimeoutRedeliversWithCountPlusOneAfterBackoff) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 1);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto first, g->Fetch("slow", 1));
  ASSERT_EQ(first.size(), 1u);
  clock_.Advance(9'999);
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, g->Fetch("fast", 1));
  EXPECT_TRUE(none.empty());
  clock_.Advance(1);  // the lease expires; the backoff (100 ms) starts
  ONCE_ASSERT_OK_AND_ASSIGN(auto backoff, g->Fetch("fast", 1));
  EXPECT_TRUE(backoff.empty());
  clock_.Advance(100);
  ONCE_ASSERT_OK_AND_ASSIGN(auto second, g->Fetch("fast", 1));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].delivery_count, 2);
  // The slow consumer's late ack is refused and changes nothing.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult late, g->Ack({first[0].token}));
  EXPECT_EQ(late.applied, 0);
  ASSERT_EQ(late.refused.size(), 1u);
  EXPECT_THAT(late.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("redelivered")));
  EXPECT_THAT(late.ToStatus(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(g->Describe().leased, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult ok, g->Ack({second[0].token}));
  EXPECT_EQ(ok.applied, 1);
}

TEST_P(SharedGroupTest, ExpiredLeaseAckIsRefusedBeforeRedelivery) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 1);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  clock_.Advance(10'000);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Ack({ds[0].token}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_THAT(r.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expired")));
}

TEST_P(SharedGroupTest, MaxDeliveriesMovesToDeadLetterTopicWithHeaders) {
  MakeTopic("t", 2, GetParam());
  auto topic = *broker_->GetTopic("t");
  Record keyed;
  keyed.key = "k";
  keyed.flags = kRecordHasKey;
  keyed.value = "poison";
  keyed.headers.push_back({"h", "v"});
  ONCE_ASSERT_OK_AND_ASSIGN(auto published, topic->Publish({keyed}));
  auto g = MakeGroup("t", "g", Config());
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 10));
    ASSERT_EQ(ds.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(ds[0].delivery_count, attempt);
    clock_.Advance(10'000 + 1000);  // timeout + the largest backoff
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto after, g->Fetch("c", 10));
  EXPECT_TRUE(after.empty());
  ONCE_ASSERT_OK_AND_ASSIGN(auto dlq, broker_->GetTopic("t-dlq"));
  EXPECT_EQ(dlq->config().backend, GetParam());
  std::vector<Record> letters;
  for (int p = 0; p < dlq->partition_count(); ++p) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto rs, dlq->Read(p, 0, ReadLimits{}));
    letters.insert(letters.end(), rs.begin(), rs.end());
  }
  ASSERT_EQ(letters.size(), 1u);
  const Record& r = letters[0];
  EXPECT_EQ(r.value, "poison");
  EXPECT_EQ(r.key, "k");
  EXPECT_EQ(HeaderOf(r, "h"), "v");
  EXPECT_EQ(HeaderOf(r, kHeaderOriginTopic), "t");
  EXPECT_EQ(HeaderOf(r, kHeaderOriginPartition), absl::StrCat(published[0].partition));
  EXPECT_EQ(HeaderOf(r, kHeaderOriginOffset), "0");
  EXPECT_EQ(HeaderOf(r, kHeaderOriginGroup), "g");
  EXPECT_EQ(HeaderOf(r, kHeaderReason), kReasonMaxDeliveries);
  EXPECT_EQ(HeaderOf(r, kHeaderDeliveryCount), "3");
  GroupDescription d = g->Describe();
  EXPECT_EQ(d.dead_lettered, 1);
  EXPECT_EQ(d.lag, 0);
}

TEST_P(SharedGroupTest, NackDeadLetterMovesAtOnce) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 2);
  GroupConfig c = Config();
  c.dead_letter_topic = "parked";
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->Nack({ds[0].token}, NackAction::kDeadLetter));
  EXPECT_EQ(r.applied, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto dlq, broker_->GetTopic("parked"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto rs, dlq->Read(0, 0, ReadLimits{}));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(HeaderOf(rs[0], kHeaderReason), kReasonRejected);
  EXPECT_EQ(HeaderOf(rs[0], kHeaderDeliveryCount), "1");
  // The token is spent.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult again, g->Ack({ds[0].token}));
  EXPECT_THAT(again.ToStatus(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(SharedGroupTest, PrefetchLimitsLeasesPerConsumer) {
  MakeTopic("t", 2, GetParam());
  Publish("t", 50);
  GroupConfig c = Config();
  c.prefetch = 5;
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto a, g->Fetch("a", 100));
  EXPECT_EQ(a.size(), 5u);
  ONCE_ASSERT_OK_AND_ASSIGN(auto a2, g->Fetch("a", 100));
  EXPECT_TRUE(a2.empty());
  // A slow consumer at its limit does not block another one.
  ONCE_ASSERT_OK_AND_ASSIGN(auto b, g->Fetch("b", 3));
  EXPECT_EQ(b.size(), 3u);
  ONCE_ASSERT_OK(g->Ack({a[0].token, a[1].token}).status());
  ONCE_ASSERT_OK_AND_ASSIGN(auto a3, g->Fetch("a", 100));
  EXPECT_EQ(a3.size(), 2u);
}

// An ack wakes the group's waiters only when it frees room a fetch was
// refused for: otherwise every waiting consumer would fetch in vain after
// every ack.
TEST_P(SharedGroupTest, AnAckWakesWaitersOnlyWhenAFetchHitThePrefetchLimit) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 4);
  GroupConfig c = Config();
  c.prefetch = 2;
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto first, g->Fetch("a", 1));  // within the limit
  uint64_t v = g->notifier().version();
  ONCE_ASSERT_OK(g->Ack({first[0].token}).status());
  EXPECT_EQ(g->notifier().version(), v) << "nobody waited for the room";

  ONCE_ASSERT_OK_AND_ASSIGN(auto full, g->Fetch("a", 3));  // cut to 2 by prefetch
  ASSERT_EQ(full.size(), 2u);
  v = g->notifier().version();
  ONCE_ASSERT_OK(g->Ack({full[0].token}).status());
  EXPECT_GT(g->notifier().version(), v) << "a fetch was cut short: the ack frees its room";
  v = g->notifier().version();
  ONCE_ASSERT_OK(g->Ack({full[1].token}).status());
  EXPECT_EQ(g->notifier().version(), v) << "already told; no fetch was cut short since";
  ONCE_ASSERT_OK_AND_ASSIGN(auto last, g->Fetch("a", 3));
  EXPECT_EQ(last.size(), 1u);
}

TEST_P(SharedGroupTest, DoubleAckIsRefusedAndChangesNothing) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 2);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 2));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult first, g->Ack({ds[0].token}));
  EXPECT_EQ(first.applied, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult second, g->Ack({ds[0].token, ds[1].token}));
  EXPECT_EQ(second.applied, 1);  // the valid one still applies
  ASSERT_EQ(second.refused.size(), 1u);
  EXPECT_EQ(second.refused[0].index, 0u);
  EXPECT_THAT(second.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already acknowledged")));
  // The same token twice in one call: the second is refused.
  Publish("t", 1);
  ONCE_ASSERT_OK_AND_ASSIGN(auto more, g->Fetch("c", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult twice, g->Ack({more[0].token, more[0].token}));
  EXPECT_EQ(twice.applied, 1);
  EXPECT_EQ(twice.refused.size(), 1u);
  EXPECT_EQ(g->Describe().acked, 3);
}

TEST_P(SharedGroupTest, TokensOfAnotherGroupOrForgedAreInvalidArgument) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 1);
  auto g1 = MakeGroup("t", "g1", Config());
  auto g2 = MakeGroup("t", "g2", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto d1, g1->Fetch("c", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto d2, g2->Fetch("c", 1));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g2->Ack({d1[0].token}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_THAT(r.refused[0].status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another group")));
  std::string forged = d2[0].token;
  forged[10] = forged[10] == 'A' ? 'B' : 'A';
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult f, g2->Ack({forged, "garbage", d2[0].token}));
  EXPECT_EQ(f.applied, 1);
  ASSERT_EQ(f.refused.size(), 2u);
  EXPECT_THAT(f.refused[0].status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f.refused[1].status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")));
  EXPECT_THAT(f.ToStatus(), StatusIs(absl::StatusCode::kInvalidArgument));
  // g1's delivery is untouched by all of that.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult ok, g1->Ack({d1[0].token}));
  EXPECT_EQ(ok.applied, 1);
}

TEST_P(SharedGroupTest, RecreatedGroupRefusesTheOldIncarnationsTokens) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 1);
  auto old = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, old->Fetch("c", 1));
  ONCE_ASSERT_OK(registry_->DeleteGroup("t", "g"));
  EXPECT_THAT(old->Fetch("c", 1), StatusIs(absl::StatusCode::kNotFound));
  auto fresh = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, fresh->Ack({ds[0].token}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_THAT(r.refused[0].status, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SharedGroupTest, PinnedLeaseNeverExpiresAndRefusesRelease) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 2);
  GroupConfig c = Config();
  c.guarantee = Guarantee::kExactlyOnce;
  auto g = MakeGroup("t", "g", c);
  EXPECT_THAT(g->Fetch("c", 1), StatusIs(absl::StatusCode::kFailedPrecondition));
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Lease("participant-1", 2));
  ASSERT_EQ(ds.size(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult pinned, g->Pin({ds[0].token}));
  EXPECT_EQ(pinned.applied, 1);
  clock_.Advance(1'000'000);
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->Lease("participant-2", 10));
  ASSERT_EQ(again.size(), 1u);  // only the unpinned one came back
  EXPECT_EQ(again[0].record.offset, ds[1].record.offset);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult release, g->Nack({ds[0].token}, NackAction::kRequeue));
  ASSERT_EQ(release.refused.size(), 1u);
  EXPECT_THAT(release.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("pinned")));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult done, g->Ack({ds[0].token}));
  EXPECT_EQ(done.applied, 1);
}

TEST_P(SharedGroupTest, AckPositionsDeletesWithoutTokensIdempotently) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  ONCE_ASSERT_OK(g->AckPositions({{0, 0}, {0, 2}}));
  ONCE_ASSERT_OK(g->AckPositions({{0, 0}, {0, 2}}));
  EXPECT_THAT(g->AckPositions({{0, 3}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(g->AckPositions({{5, 0}}), StatusIs(absl::StatusCode::kInvalidArgument));
  ONCE_ASSERT_OK_AND_ASSIGN(auto rest, g->Fetch("c", 10));
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].record.offset, 1);
  EXPECT_EQ(g->Describe().acked, 2);
}

TEST_P(SharedGroupTest, ResetRedeliversFromTheTarget) {
  MakeTopic("t", 1, GetParam());
  for (int i = 0; i < 4; ++i) {
    Publish("t", 1, absl::StrCat("t", i, "-"));
    clock_.Advance(1000);
  }
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto all, g->Fetch("c", 10));
  ASSERT_EQ(all.size(), 4u);
  ONCE_ASSERT_OK(g->Ack(Tokens(all)).status());
  ONCE_ASSERT_OK(g->Reset(Position::Offset(2), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto from2, g->Fetch("c", 10));
  ASSERT_EQ(from2.size(), 2u);
  EXPECT_EQ(from2[0].record.offset, 2);
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult stale, g->Ack({all[0].token}));
  EXPECT_EQ(stale.applied, 0);
  ONCE_ASSERT_OK(g->Reset(Position::Earliest(), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult fenced, g->Ack(Tokens(from2)));
  EXPECT_EQ(fenced.applied, 0);  // a reset voids outstanding leases
  ONCE_ASSERT_OK_AND_ASSIGN(auto from0, g->Fetch("c", 10));
  EXPECT_EQ(from0.size(), 4u);
  ONCE_ASSERT_OK(g->Reset(Position::Latest(), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, g->Fetch("c", 10));
  EXPECT_TRUE(none.empty());
  const int64_t t0 = all[0].record.timestamp_ms;
  ONCE_ASSERT_OK(g->Reset(Position::Time(t0 + 1500), -1));
  ONCE_ASSERT_OK_AND_ASSIGN(auto from_time, g->Fetch("c", 10));
  ASSERT_EQ(from_time.size(), 2u);
  EXPECT_EQ(from_time[0].record.offset, 2);
  EXPECT_THAT(g->Reset(Position::Earliest(), 7), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SharedGroupTest, StartPositionLatestSkipsExistingMessages) {
  MakeTopic("t", 2, GetParam());
  Publish("t", 10);
  GroupConfig c = Config();
  c.start = Position::Latest();
  auto g = MakeGroup("t", "g", c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, g->Fetch("c", 10));
  EXPECT_TRUE(none.empty());
  Publish("t", 4, "new");
  ONCE_ASSERT_OK_AND_ASSIGN(auto fresh, g->Fetch("c", 10));
  ASSERT_EQ(fresh.size(), 4u);
  for (const Delivery& d : fresh) EXPECT_THAT(d.record.value, HasSubstr("new"));
}

TEST_P(SharedGroupTest, NotifierMovesWhenMessagesMayBeAvailable) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 1);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->Fetch("c", 1));
  uint64_t v = g->notifier().version();
  int calls = 0;
  int64_t id = g->notifier().AddListener([&] { ++calls; });
  ONCE_ASSERT_OK(g->Nack({ds[0].token}, NackAction::kRequeue).status());
  EXPECT_GT(g->notifier().version(), v);
  EXPECT_EQ(calls, 1);
  registry_->NotifyPublished("t");
  EXPECT_EQ(calls, 2);
  g->notifier().RemoveListener(id);
  EXPECT_EQ(g->notifier().WaitForChange(0, absl::ZeroDuration()), g->notifier().version());
  ASSERT_TRUE(g->NextDeadlineMs().has_value());
  EXPECT_EQ(*g->NextDeadlineMs(), clock_.NowMs() + 100);  // the backoff's end
}

TEST_P(SharedGroupTest, ConcurrentConsumersEachMessageAckedOnce) {
  MakeTopic("t", 4, GetParam());
  Publish("t", 2000);
  auto g = MakeGroup("t", "g", Config());
  std::vector<std::thread> threads;
  std::vector<std::vector<std::string>> got(4);
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&, c] {
      for (int round = 0; round < 1000; ++round) {
        auto ds = g->Fetch(absl::StrCat("c", c), 25);
        if (!ds.ok() || ds->empty()) break;
        for (const Delivery& d : *ds) got[c].push_back(d.record.value);
        auto r = g->Ack(Tokens(*ds));
        if (!r.ok() || r->applied != static_cast<int64_t>(ds->size())) {
          ADD_FAILURE() << "ack failed";
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  size_t total = 0;
  for (const auto& v : got) {
    total += v.size();
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(total, 2000u);
  EXPECT_EQ(all.size(), 2000u);
}

TEST_P(SharedGroupTest, ReclaimTrimsWhatEveryGroupIsDoneWith) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 100);
  auto a = MakeGroup("t", "a", Config());
  auto b = MakeGroup("t", "b", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto da, a->Fetch("c", 100));
  ONCE_ASSERT_OK(a->Ack(Tokens(da)).status());
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, b->Fetch("c", 40));
  ONCE_ASSERT_OK(b->Ack(Tokens(db)).status());
  ONCE_ASSERT_OK_AND_ASSIGN(auto trimmed, registry_->ReclaimSpace());
  ASSERT_EQ(trimmed.size(), 1u);
  EXPECT_EQ(trimmed[0].before, 40);
  auto topic = *broker_->GetTopic("t");
  if (GetParam() == Backend::kMemory) {
    EXPECT_EQ(topic->partition(0)->FirstOffset(), 40);
  }
  // b still gets the rest.
  ONCE_ASSERT_OK_AND_ASSIGN(auto rest, b->Fetch("c", 100));
  EXPECT_EQ(rest.size(), 60u);
}

// The WebSocket's delivery tags: the service keeps each delivery's handle
// and settles by it, with the same judgement as a token's text.
TEST_P(SharedGroupTest, HandlesSettleAsTheirTokensWould) {
  MakeTopic("t", 2, GetParam());
  Publish("t", 6);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->FetchHandles("c1", 6));
  ASSERT_EQ(ds.size(), 6u);
  std::vector<DeliveryToken> handles;
  for (const Delivery& d : ds) {
    EXPECT_TRUE(d.token.empty());  // no text made
    EXPECT_EQ(d.handle.partition, d.partition);
    EXPECT_EQ(d.handle.offset, d.record.offset);
    EXPECT_EQ(d.handle.delivery_count, 1);
    handles.push_back(d.handle);
  }
  // Ack two, one of them twice in the call: the second is a duplicate.
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->AckHandles({handles[0], handles[1], handles[0]}));
  EXPECT_EQ(r.applied, 2);
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].index, 2u);
  EXPECT_TRUE(r.refused[0].token.empty());
  EXPECT_THAT(r.refused[0].status, StatusIs(absl::StatusCode::kFailedPrecondition));
  // Acked already: stale.
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({handles[1]}));
  EXPECT_EQ(r.applied, 0);
  EXPECT_THAT(r.ToStatus(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already acknowledged")));
  // Not this group's (another incarnation) or no such partition: invalid,
  // and nothing applied.
  DeliveryToken foreign = handles[2];
  foreign.incarnation += 1000;
  DeliveryToken bad_partition = handles[2];
  bad_partition.partition = 7;
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({foreign, bad_partition}));
  EXPECT_EQ(r.applied, 0);
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_THAT(r.refused[0].status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.refused[1].status, StatusIs(absl::StatusCode::kInvalidArgument));
  // Nack (requeue) one: it comes again, counted, and its old handle is
  // stale from then on.
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->NackHandles({handles[2]}, NackAction::kRequeue));
  EXPECT_EQ(r.applied, 1);
  clock_.Advance(1'000);  // past the backoff
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, g->FetchHandles("c1", 6));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].handle.offset, handles[2].offset);
  EXPECT_EQ(again[0].handle.delivery_count, 2);
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({handles[2]}));
  EXPECT_EQ(r.applied, 0);
  ONCE_ASSERT_OK_AND_ASSIGN(r,
                            g->AckHandles({again[0].handle, handles[3], handles[4], handles[5]}));
  EXPECT_EQ(r.applied, 4);
  EXPECT_EQ(g->Describe().acked, 6);
  EXPECT_EQ(g->Describe().lag, 0);
}

// The coordinator's path: leases without token text, pinned and acked by
// handle; a pinned lease refuses a nack.
TEST_P(SharedGroupTest, LeaseAndPinByHandle) {
  MakeTopic("t", 1, GetParam());
  Publish("t", 3);
  auto g = MakeGroup("t", "g", Config());
  ONCE_ASSERT_OK_AND_ASSIGN(auto ds, g->LeaseHandles("p1", 3));
  ASSERT_EQ(ds.size(), 3u);
  for (const Delivery& d : ds) EXPECT_TRUE(d.token.empty());
  ONCE_ASSERT_OK_AND_ASSIGN(AckResult r, g->PinHandles({ds[0].handle, ds[1].handle}));
  EXPECT_EQ(r.applied, 2);
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->NackHandles({ds[0].handle, ds[2].handle}, NackAction::kRequeue));
  EXPECT_EQ(r.applied, 1);  // the unpinned one
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].index, 0u);
  EXPECT_THAT(r.refused[0].status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("pinned")));
  // Pinned leases never expire; acked by handle they are done.
  clock_.Advance(1'000'000);
  ONCE_ASSERT_OK_AND_ASSIGN(r, g->AckHandles({ds[0].handle, ds[1].handle}));
  EXPECT_EQ(r.applied, 2);
  EXPECT_EQ(g->Describe().acked, 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedGroupTest,
                         ::testing::Values(Backend::kMemory, Backend::kDisk),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(BackendName(info.param));
                         });

}  // namespace
}  // namespace once::broker
