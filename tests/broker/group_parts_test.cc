// The small pieces of consumer groups: settings, tokens, offset ranges,
// the lease table and the store.
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "broker/group_config.h"
#include "broker/group_lease_table.h"
#include "broker/group_ranges.h"
#include "broker/group_store.h"
#include "broker/group_token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(GroupConfigTest, NamesRoundTrip) {
  for (GroupMode m : {GroupMode::kShared, GroupMode::kOrdered}) {
    EXPECT_THAT(ParseGroupMode(GroupModeName(m)), testing::IsOkAndHolds(m));
  }
  for (Guarantee g : {Guarantee::kAtLeastOnce, Guarantee::kIdempotent, Guarantee::kExactlyOnce}) {
    EXPECT_THAT(ParseGuarantee(GuaranteeName(g)), testing::IsOkAndHolds(g));
  }
  for (Position p : {Position::Earliest(), Position::Latest(), Position::Offset(7),
                     Position::Time(1700000000000)}) {
    EXPECT_THAT(ParsePosition(PositionName(p)), testing::IsOkAndHolds(p));
  }
  EXPECT_THAT(ParseGroupMode("queue"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseGuarantee("twice"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePosition("offset:-1"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePosition("yesterday"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GroupConfigTest, DefaultsAreValidAndDeadLetterTopicDefaults) {
  GroupConfig c;
  EXPECT_THAT(ValidateGroupConfig(c, "orders"), ::once::testing::IsOk());
  EXPECT_EQ(DeadLetterTopicFor("orders", c), "orders-dlq");
  c.dead_letter_topic = "parked";
  EXPECT_EQ(DeadLetterTopicFor("orders", c), "parked");
  // A 200-character topic has no room for "-dlq".
  EXPECT_THAT(ValidateGroupConfig(GroupConfig(), std::string(200, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dead_letter_topic")));
}

class DeliveryTokenTest : public ::testing::Test {
 protected:
  DeliveryTokenCodec codec_ = *DeliveryTokenCodec::Create(DeliveryTokenCodec::NewSecret());
  DeliveryToken token_{42, 3, 7, 5, 123456789012, 99, 2};
};

TEST_F(DeliveryTokenTest, RoundTrips) {
  std::string text = codec_.Encode(token_);
  EXPECT_EQ(text.size(), 66u);
  EXPECT_THAT(codec_.Decode(text), testing::IsOkAndHolds(token_));
}

TEST_F(DeliveryTokenTest, EveryAlteredCharacterIsRefused) {
  const std::string text = codec_.Encode(token_);
  for (size_t i = 0; i < text.size(); ++i) {
    std::string altered = text;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    EXPECT_THAT(codec_.Decode(altered), StatusIs(absl::StatusCode::kInvalidArgument)) << i;
  }
}

TEST_F(DeliveryTokenTest, AnotherSecretsTokensAreForged) {
  auto other = *DeliveryTokenCodec::Create(DeliveryTokenCodec::NewSecret());
  EXPECT_THAT(codec_.Decode(other.Encode(token_)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forged")));
}

// The text is the standard unpadded base64url of the token's bytes (RFC
// 4648 §5), whatever the values: checked against Abseil's encoder.
TEST_F(DeliveryTokenTest, TextIsCanonicalBase64Url) {
  const DeliveryToken extremes[] = {
      token_,
      DeliveryToken{0, 0, 0, 0, 0, 0, 0},
      DeliveryToken{~0ull, ~0u, ~0u, -1, -1, ~0ull, -1},
      DeliveryToken{0x0123456789abcdefull, 0xfedcba98u, 1, 1 << 30, int64_t{1} << 62, 77, 3},
  };
  for (const DeliveryToken& t : extremes) {
    const std::string text = codec_.Encode(t);
    std::string raw;
    ASSERT_TRUE(absl::WebSafeBase64Unescape(text, &raw)) << text;
    ASSERT_EQ(raw.size(), 49u);
    std::string again;
    absl::WebSafeBase64Escape(raw, &again);
    EXPECT_EQ(again, text);
    EXPECT_THAT(codec_.Decode(text), testing::IsOkAndHolds(t));
  }
}

TEST_F(DeliveryTokenTest, CharactersOutsideBase64UrlAreRefusedAnywhere) {
  const std::string text = codec_.Encode(token_);
  for (char c : {'+', '/', '=', '*', ' ', '\0', '\x80', '\xff'}) {
    for (size_t i = 0; i < text.size(); ++i) {
      std::string altered = text;
      altered[i] = c;
      EXPECT_THAT(codec_.Decode(altered),
                  StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64url")))
          << "character " << static_cast<int>(c) << " at " << i;
    }
  }
}

// The last character carries 2 bits of the token and 4 unused ones, which
// must be zero: "B" decodes to the same bytes as "A" would, but is not the
// token's text.
TEST_F(DeliveryTokenTest, NonCanonicalLastCharacterIsRefused) {
  std::string text = codec_.Encode(token_);
  ASSERT_TRUE(text.back() == 'A' || text.back() == 'Q' || text.back() == 'g' || text.back() == 'w');
  text.back() = static_cast<char>(text.back() + 1);
  EXPECT_THAT(codec_.Decode(text),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("canonical")));
}

TEST_F(DeliveryTokenTest, MalformedTextIsRefused) {
  EXPECT_THAT(codec_.Decode(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(codec_.Decode(std::string(66, '*')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  EXPECT_THAT(DeliveryTokenCodec::Create("short"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(OffsetRangeSetTest, InsertMergesAndAbsorbsIntoFloor) {
  OffsetRangeSet s(10);
  EXPECT_TRUE(s.Contains(9));
  EXPECT_FALSE(s.Contains(10));
  EXPECT_TRUE(s.Insert(12));
  EXPECT_TRUE(s.Insert(13));
  EXPECT_FALSE(s.Insert(13));
  EXPECT_TRUE(s.Insert(15));
  EXPECT_EQ(s.floor(), 10);
  EXPECT_EQ(s.CountAboveFloor(), 3);
  EXPECT_THAT(s.Ranges(), ElementsAre(OffsetRange{12, 14}, OffsetRange{15, 16}));
  EXPECT_EQ(s.NextAbsent(12), 14);
  EXPECT_EQ(s.NextAbsent(5), 10);
  EXPECT_EQ(s.FloorWith({10, 11}), 14);
  EXPECT_EQ(s.FloorWith({10, 11, 14}), 16);
  EXPECT_EQ(s.FloorWith({11}), 10);
  EXPECT_TRUE(s.Insert(11));
  EXPECT_TRUE(s.Insert(10));
  EXPECT_EQ(s.floor(), 14);
  EXPECT_TRUE(s.Insert(14));
  EXPECT_EQ(s.floor(), 16);
  EXPECT_EQ(s.CountAboveFloor(), 0);
  EXPECT_TRUE(s.Ranges().empty());
}

TEST(OffsetRangeSetTest, InsertRangeOverlapsAndRaiseFloor) {
  OffsetRangeSet s;
  s.InsertRange(5, 8);
  s.InsertRange(7, 12);
  s.InsertRange(20, 22);
  s.InsertRange(12, 13);
  EXPECT_THAT(s.Ranges(), ElementsAre(OffsetRange{5, 13}, OffsetRange{20, 22}));
  EXPECT_EQ(s.CountAboveFloor(), 10);
  s.RaiseFloor(6);
  EXPECT_EQ(s.floor(), 13);
  s.RaiseFloor(21);
  EXPECT_EQ(s.floor(), 22);
  EXPECT_EQ(s.CountAboveFloor(), 0);
  s.Reset(3);
  EXPECT_EQ(s.floor(), 3);
  EXPECT_FALSE(s.Contains(3));
  EXPECT_THAT(OffsetRangeSet::Runs({1, 2, 3, 7, 9, 10}),
              ElementsAre(OffsetRange{1, 4}, OffsetRange{7, 8}, OffsetRange{9, 11}));
}

TEST(LeaseTableTest, ExpiresInDeadlineOrderAndSkipsPinnedAndSettling) {
  LeaseTable t;
  t.Add({0, 1, 7, 1, 1, 100});
  t.Add({0, 2, 7, 1, 2, 50});
  t.Add({1, 1, 8, 1, 3, 60});
  t.Add({1, 2, 8, 1, 4, 10});
  EXPECT_EQ(t.HeldBy(7), 2);
  EXPECT_EQ(t.NextDeadline(), 10);
  t.SetState(1, 2, LeaseState::kPinned);
  t.SetState(0, 2, LeaseState::kSettling);
  EXPECT_EQ(t.NextDeadline(), 60);
  std::vector<Lease> expired = t.TakeExpired(100);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].offset, 1);
  EXPECT_EQ(expired[0].partition, 1);
  EXPECT_EQ(expired[1].partition, 0);
  EXPECT_EQ(t.size(), 2);
  t.Unsettle(0, 2);  // back to active, deadline 50: due
  EXPECT_EQ(t.TakeExpired(100).size(), 1u);
  EXPECT_EQ(t.HeldBy(7), 0);
  EXPECT_EQ(t.HeldBy(8), 1);
}

TEST(LeaseTableTest, AckedLeasesLeaveNoDeadlineBehind) {
  // Leases acked before their deadline (the common case) are dropped from
  // the deadline heap lazily: they never expire, NextDeadline skips them
  // and the heap stays bounded however many come and go.
  LeaseTable t;
  int64_t offset = 0;
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 100; ++i, ++offset) {
      t.Add({0, offset, 1, 1, static_cast<uint64_t>(offset), 1000 + offset});
    }
    for (int64_t o = offset - 100; o < offset - 1; ++o) t.Remove(0, o);  // all but the last
    // Bounded by the leases held at the last Add (99 more than now).
    ASSERT_LE(t.deadline_entries(), 2 * static_cast<size_t>(t.size() + 99) + 1024);
  }
  EXPECT_EQ(t.size(), 200);
  EXPECT_EQ(t.NextDeadline(), 1000 + 99);
  const std::vector<Lease> expired = t.TakeExpired(1000 + offset);
  ASSERT_EQ(expired.size(), 200u);
  for (size_t i = 0; i < expired.size(); ++i) EXPECT_EQ(expired[i].offset, 99 + 100 * i);
  EXPECT_EQ(t.NextDeadline(), std::nullopt);
  EXPECT_EQ(t.size(), 0);
}

TEST(LeaseTableTest, DeadlinesOutOfOrderExpireInOrder) {
  LeaseTable t;
  const std::vector<int64_t> deadlines = {100, 50, 200, 70, 70, 300, 10, 250};
  for (size_t i = 0; i < deadlines.size(); ++i) {
    t.Add({0, static_cast<int64_t>(i), 1, 1, i, deadlines[i]});
  }
  t.Remove(0, 3);  // one of the out-of-order ones, acked
  EXPECT_EQ(t.NextDeadline(), 10);
  std::vector<int64_t> order;
  for (const Lease& l : t.TakeExpired(260)) order.push_back(l.deadline_ms);
  EXPECT_EQ(order, (std::vector<int64_t>{10, 50, 70, 100, 200, 250}));
  EXPECT_EQ(t.NextDeadline(), 300);
}

TEST(LeaseTableTest, ALeaseDeliveredAgainExpiresOnlyAtItsNewDeadline) {
  LeaseTable t;
  t.Add({0, 5, 1, 1, 10, 100});
  t.Remove(0, 5);
  t.Add({0, 5, 2, 2, 11, 300});  // the same message, delivered again
  EXPECT_EQ(t.NextDeadline(), 300);
  EXPECT_TRUE(t.TakeExpired(200).empty());
  const std::vector<Lease> expired = t.TakeExpired(300);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].sequence, 11u);
  EXPECT_EQ(expired[0].consumer, 2u);
}

TEST(LeaseTableTest, ALeaseSettledAndRestoredExpiresOnce) {
  LeaseTable t;
  t.Add({0, 1, 1, 1, 1, 100});
  t.SetState(0, 1, LeaseState::kSettling);
  EXPECT_EQ(t.NextDeadline(), std::nullopt);
  EXPECT_TRUE(t.TakeExpired(1000).empty());
  t.Unsettle(0, 1);
  t.SetState(0, 1, LeaseState::kSettling);
  t.Unsettle(0, 1);  // two entries for one lease now
  EXPECT_EQ(t.NextDeadline(), 100);
  EXPECT_EQ(t.TakeExpired(1000).size(), 1u);
  EXPECT_TRUE(t.TakeExpired(1000).empty());
  EXPECT_EQ(t.NextDeadline(), std::nullopt);
}

class GroupStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_group_store_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/groups.db"; }
  std::string dir_;
};

TEST_F(GroupStoreTest, BootEpochGrowsAndSecretStays) {
  std::string secret;
  for (uint32_t epoch = 1; epoch <= 3; ++epoch) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
    EXPECT_EQ(store->boot_epoch(), epoch);
    if (epoch == 1) secret = store->token_secret();
    EXPECT_EQ(store->token_secret(), secret);
  }
}

TEST_F(GroupStoreTest, WritesMergeRangesRaiseFloorsAndReset) {
  int64_t id = 0;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
    StoredGroup g;
    g.topic = "t";
    g.name = "g";
    ONCE_ASSERT_OK_AND_ASSIGN(id, store->CreateGroup(g, {5, 0}));
    EXPECT_THAT(store->CreateGroup(g, {}), StatusIs(absl::StatusCode::kAlreadyExists));
    GroupWriteBatch b;
    PartitionUpdate u;
    u.group_id = id;
    u.partition = 0;
    u.done_floor = 7;
    u.dispatched = 20;
    u.add_acked = 4;
    u.add_ranges = {{9, 11}, {15, 16}};
    u.set_counts = {{8, 3}, {12, 2}};
    b.updates.push_back(u);
    ONCE_ASSERT_OK(store->Write(b));
    // A lower floor never lowers it.
    GroupWriteBatch lower;
    PartitionUpdate l;
    l.group_id = id;
    l.partition = 0;
    l.done_floor = 6;
    l.add_acked = 1;
    lower.updates.push_back(l);
    ONCE_ASSERT_OK(store->Write(lower));
    PartitionUpdate r;
    r.group_id = id;
    r.partition = 1;
    r.reset = true;
    r.done_floor = 3;
    GroupWriteBatch reset;
    reset.updates.push_back(r);
    ONCE_ASSERT_OK(store->Write(reset));
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  ONCE_ASSERT_OK_AND_ASSIGN(auto groups, store->LoadGroups());
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].group_id, id);
  ONCE_ASSERT_OK_AND_ASSIGN(auto parts, store->LoadPartitions(id));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].done_floor, 7);
  EXPECT_EQ(parts[0].dispatched, 20);
  EXPECT_EQ(parts[0].acked, 5);
  EXPECT_THAT(parts[0].ranges, ElementsAre(OffsetRange{9, 11}, OffsetRange{15, 16}));
  EXPECT_EQ(parts[0].counts.size(), 2u);
  EXPECT_EQ(parts[1].done_floor, 3);
  ONCE_ASSERT_OK(store->DeleteGroup(id));
  ONCE_ASSERT_OK_AND_ASSIGN(auto none, store->LoadGroups());
  EXPECT_TRUE(none.empty());
  ONCE_ASSERT_OK_AND_ASSIGN(auto no_parts, store->LoadPartitions(id));
  EXPECT_TRUE(no_parts.empty());
}

TEST_F(GroupStoreTest, ARisingFloorPrunesOnlyWhatIsBelowIt) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  StoredGroup g;
  g.topic = "t";
  g.name = "g";
  ONCE_ASSERT_OK_AND_ASSIGN(const int64_t id, store->CreateGroup(g, {0}));
  auto write = [&](int64_t floor, std::vector<OffsetRange> ranges,
                   std::vector<std::pair<int64_t, int>> counts) {
    GroupWriteBatch b;
    PartitionUpdate u;
    u.group_id = id;
    u.partition = 0;
    u.done_floor = floor;
    u.dispatched = 40;
    u.add_ranges = std::move(ranges);
    for (const auto& [offset, n] : counts) u.set_counts.emplace_back(offset, n);
    b.updates.push_back(std::move(u));
    return store->Write(b);
  };
  ONCE_ASSERT_OK(write(2, {{9, 11}, {15, 16}}, {{8, 3}, {12, 2}}));
  // Nothing below 5: nothing goes.
  ONCE_ASSERT_OK(write(5, {}, {}));
  ONCE_ASSERT_OK_AND_ASSIGN(auto parts, store->LoadPartitions(id));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_THAT(parts[0].ranges, ElementsAre(OffsetRange{9, 11}, OffsetRange{15, 16}));
  EXPECT_EQ(parts[0].counts.size(), 2u);
  // Floor 12: the range ending at 11 and the count of offset 8 go; the
  // count of offset 12 (not below the floor) and the later range stay.
  ONCE_ASSERT_OK(write(12, {}, {}));
  ONCE_ASSERT_OK_AND_ASSIGN(parts, store->LoadPartitions(id));
  EXPECT_EQ(parts[0].done_floor, 12);
  EXPECT_THAT(parts[0].ranges, ElementsAre(OffsetRange{15, 16}));
  ASSERT_EQ(parts[0].counts.size(), 1u);
  EXPECT_EQ(parts[0].counts[0].first, 12);
  // Floor 16: everything below it goes.
  ONCE_ASSERT_OK(write(16, {}, {}));
  ONCE_ASSERT_OK_AND_ASSIGN(parts, store->LoadPartitions(id));
  EXPECT_TRUE(parts[0].ranges.empty());
  EXPECT_TRUE(parts[0].counts.empty());
}

TEST_F(GroupStoreTest, ConcurrentWritersShareCommits) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  StoredGroup g;
  g.topic = "t";
  g.name = "g";
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t id, store->CreateGroup(g, {0, 0, 0, 0}));
  constexpr int kThreads = 4, kWrites = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        GroupWriteBatch b;
        PartitionUpdate u;
        u.group_id = id;
        u.partition = t;
        u.done_floor = i + 1;
        u.add_acked = 1;
        b.updates.push_back(u);
        EXPECT_THAT(store->Write(b), ::once::testing::IsOk());
      }
    });
  }
  for (auto& th : threads) th.join();
  GroupStoreStats stats = store->stats();
  EXPECT_EQ(stats.batches, kThreads * kWrites);
  EXPECT_LE(stats.commits, stats.batches);
  ONCE_ASSERT_OK_AND_ASSIGN(auto parts, store->LoadPartitions(id));
  for (const StoredPartition& p : parts) {
    EXPECT_EQ(p.done_floor, kWrites);
    EXPECT_EQ(p.acked, kWrites);
  }
}

TEST_F(GroupStoreTest, PacedCommitsGatherWhatQueuesMeanwhile) {
  GroupStoreOptions paced;
  // Long enough that the threads below all queue within it even on a busy
  // machine: they then share the one commit the pacing holds back.
  paced.min_commit_interval = absl::Milliseconds(500);
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path(), {}, paced));
  StoredGroup g;
  g.topic = "t";
  g.name = "g";
  constexpr int kThreads = 8;
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t id, store->CreateGroup(g, std::vector<int64_t>(kThreads, 0)));
  auto ack = [&](int partition, int64_t floor) {
    GroupWriteBatch b;
    PartitionUpdate u;
    u.group_id = id;
    u.partition = partition;
    u.done_floor = floor;
    u.add_acked = 1;
    b.updates.push_back(u);
    return store->Write(b);
  };
  ONCE_ASSERT_OK(ack(0, 1));  // the first commit is not held back
  EXPECT_EQ(store->stats().commits, 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] { EXPECT_THAT(ack(t, 2), ::once::testing::IsOk()); });
  }
  for (auto& th : threads) th.join();
  GroupStoreStats stats = store->stats();
  EXPECT_EQ(stats.batches, kThreads + 1);
  EXPECT_EQ(stats.commits, 2);
  ONCE_ASSERT_OK_AND_ASSIGN(auto parts, store->LoadPartitions(id));
  ASSERT_EQ(parts.size(), static_cast<size_t>(kThreads));
  for (const StoredPartition& p : parts) EXPECT_EQ(p.done_floor, 2);
}

TEST_F(GroupStoreTest, CommitIntervalOutOfRangeIsRefused) {
  for (absl::Duration bad : {absl::Milliseconds(-1), absl::Seconds(2)}) {
    GroupStoreOptions o;
    o.min_commit_interval = bad;
    EXPECT_THAT(GroupStore::Open(path(), {}, o),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_commit_interval")));
  }
}

TEST_F(GroupStoreTest, NewerSchemaIsRefused) {
  { ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path())); }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path()));
    ONCE_ASSERT_OK(db->Exec("PRAGMA user_version=99"));
  }
  EXPECT_THAT(GroupStore::Open(path()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newer")));
}

}  // namespace
}  // namespace once::broker
