// Exactly-once groups read records once written, before they are durable
// (Topic::written_partition), are woken by the broker's written listener,
// and ConsumerGroup::WhenDurable tells when what they leased is durable.
// Other groups see records only once durable.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/consumer_group.h"
#include "broker/group_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::testing::Optional;
using ::testing::SizeIs;

using GroupWrittenTest = testing::GroupTest;

GroupConfig Config(Guarantee guarantee) {
  GroupConfig c;
  c.guarantee = guarantee;
  return c;
}

std::vector<MessagePosition> Positions(const std::vector<Delivery>& ds) {
  std::vector<MessagePosition> out;
  for (const Delivery& d : ds) out.push_back({d.partition, d.record.offset});
  return out;
}

TEST_F(GroupWrittenTest, AnExactlyOnceGroupLeasesARecordBeforeItsSyncAndLearnsWhenItIsDurable) {
  MakeTopic("t", 1, Backend::kDisk);  // fsync=always
  std::shared_ptr<ConsumerGroup> eo = MakeGroup("t", "eo", Config(Guarantee::kExactlyOnce));
  std::shared_ptr<ConsumerGroup> alo = MakeGroup("t", "alo", Config(Guarantee::kAtLeastOnce));
  ASSERT_NE(eo, nullptr);
  ASSERT_NE(alo, nullptr);

  // The exactly-once group's notifier runs from the written listener:
  // between the group commit's write and its fdatasync.
  struct Seen {
    int wakes = 0;
    std::vector<Delivery> leased;
    size_t fetched_by_alo = 0;
    std::optional<absl::Status> durable;
  } seen;
  const int64_t id = eo->notifier().AddListener([&] {
    ++seen.wakes;
    absl::StatusOr<std::vector<Delivery>> leased = eo->LeaseHandles("p", 10);
    ASSERT_THAT(leased, IsOk());
    seen.leased = *leased;
    absl::StatusOr<std::vector<Delivery>> fetched = alo->FetchHandles("c", 10);
    ASSERT_THAT(fetched, IsOk());
    seen.fetched_by_alo = fetched->size();
    eo->WhenDurable(Positions(seen.leased), [&](absl::Status s) { seen.durable = s; });
    EXPECT_EQ(seen.durable, std::nullopt) << "answered before the sync";
  });
  std::atomic<int> alo_wakes{0};
  const int64_t alo_id = alo->notifier().AddListener([&] { ++alo_wakes; });

  Publish("t", 2);
  eo->notifier().RemoveListener(id);

  EXPECT_EQ(seen.wakes, 1);
  EXPECT_THAT(seen.leased, SizeIs(2));
  EXPECT_EQ(seen.fetched_by_alo, 0u) << "an at-least-once group saw records not yet durable";
  EXPECT_THAT(seen.durable, Optional(IsOk()));
  // The written listener wakes exactly-once groups only; the service's
  // NotifyPublished after the publish then wakes the others, not them.
  EXPECT_EQ(alo_wakes.load(), 0);
  registry_->NotifyPublished("t");
  EXPECT_EQ(alo_wakes.load(), 1);
  EXPECT_EQ(seen.wakes, 1);
  alo->notifier().RemoveListener(alo_id);
  absl::StatusOr<std::vector<Delivery>> fetched = alo->FetchHandles("c", 10);
  ASSERT_THAT(fetched, IsOk());
  EXPECT_THAT(*fetched, SizeIs(2));
}

TEST_F(GroupWrittenTest, OnAMemoryTopicNotifyPublishedWakesExactlyOnceGroupsAsBefore) {
  MakeTopic("m", 1, Backend::kMemory);
  std::shared_ptr<ConsumerGroup> eo = MakeGroup("m", "eo", Config(Guarantee::kExactlyOnce));
  ASSERT_NE(eo, nullptr);
  std::atomic<int> wakes{0};
  const int64_t id = eo->notifier().AddListener([&] { ++wakes; });
  Publish("m", 1);
  EXPECT_EQ(wakes.load(), 0);  // no group commit, no written listener
  registry_->NotifyPublished("m");
  EXPECT_EQ(wakes.load(), 1);
  eo->notifier().RemoveListener(id);
  std::optional<absl::Status> durable;
  eo->WhenDurable({{0, 0}}, [&](absl::Status s) { durable = s; });
  EXPECT_THAT(durable, Optional(IsOk()));
}

TEST_F(GroupWrittenTest, WhenDurableWithNoPositionsOrABadPartitionAnswersOnce) {
  MakeTopic("t", 2, Backend::kDisk);
  std::shared_ptr<ConsumerGroup> eo = MakeGroup("t", "eo", Config(Guarantee::kExactlyOnce));
  ASSERT_NE(eo, nullptr);
  Publish("t", 2);  // one per partition
  int calls = 0;
  std::optional<absl::Status> answer;
  eo->WhenDurable({}, [&](absl::Status s) {
    ++calls;
    answer = s;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(answer, Optional(IsOk()));
  calls = 0;
  eo->WhenDurable({{0, 0}, {7, 0}, {1, 0}}, [&](absl::Status s) {
    ++calls;
    answer = s;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(answer, Optional(::once::testing::StatusIs(absl::StatusCode::kInvalidArgument)));
}

}  // namespace
}  // namespace once::broker
