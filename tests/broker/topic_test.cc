#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "broker/forwarding_log.h"
#include "broker/log.h"
#include "broker/memory_log.h"
#include "broker/partitioned_topic.h"
#include "broker/partitioner.h"
#include "broker/record.h"
#include "broker/topic.h"
#include "broker/topic_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::FakeClock;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

Record Msg(std::string value, std::string idempotency_key = "", std::string key = "") {
  Record r;
  r.value = std::move(value);
  r.idempotency_key = std::move(idempotency_key);
  r.key = std::move(key);
  return r;
}

// A Log that forwards to a memory log, but whose appends can be made to
// fail.
class FailingLog final : public ForwardingLog {
 public:
  FailingLog(MemoryBudget* budget, std::shared_ptr<std::atomic<bool>> fail)
      : FailingLog(NewMemoryLog(budget), std::move(fail)) {}
  absl::StatusOr<int64_t> Append(absl::Span<const Record> records) override {
    if (fail_->load()) return absl::UnavailableError("injected append failure");
    return inner()->Append(records);
  }
  // Through Append above.
  void AppendAsync(std::vector<Record> records, AsyncStart start, AppendCallback done) override {
    Log::AppendAsync(std::move(records), start, std::move(done));
  }

 private:
  FailingLog(std::unique_ptr<Log> owned, std::shared_ptr<std::atomic<bool>> fail)
      : ForwardingLog(owned.get()), owned_(std::move(owned)), fail_(std::move(fail)) {}

  const std::unique_ptr<Log> owned_;
  std::shared_ptr<std::atomic<bool>> fail_;
};

class TopicTest : public ::testing::Test {
 protected:
  std::unique_ptr<PartitionedTopic> Make(TopicConfig config,
                                         int64_t budget_bytes = int64_t{1} << 30) {
    config.backend = Backend::kMemory;
    budget_ = std::make_shared<MemoryBudget>(budget_bytes);
    std::vector<std::unique_ptr<Log>> logs;
    for (int p = 0; p < config.partitions; ++p) logs.push_back(NewMemoryLog(budget_.get()));
    auto topic = PartitionedTopic::Open("t", config, std::move(logs), &clock_, budget_);
    EXPECT_THAT(topic, IsOk());
    return topic.ok() ? *std::move(topic) : nullptr;
  }

  static std::vector<Record> ReadAll(const Topic& topic, int partition) {
    absl::StatusOr<std::vector<Record>> got =
        topic.Read(partition, topic.partition(partition)->FirstOffset(),
                   ReadLimits{.max_records = 1'000'000, .max_bytes = 1 << 30});
    EXPECT_THAT(got, IsOk());
    return got.ok() ? *got : std::vector<Record>{};
  }

  FakeClock clock_;
  std::shared_ptr<MemoryBudget> budget_;
};

TEST_F(TopicTest, PublishStoresInOrderAndStampsTheClock) {
  auto topic = Make(TopicConfig{});
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, topic->Publish({Msg("a"), Msg("b"), Msg("c")}));
  ASSERT_EQ(results.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i].partition, 0);
    EXPECT_EQ(results[i].offset, i);
    EXPECT_FALSE(results[i].duplicate);
  }
  clock_.Advance(5);
  ONCE_ASSERT_OK_AND_ASSIGN(results, topic->Publish({Msg("d")}));
  EXPECT_EQ(results[0].offset, 3);
  std::vector<Record> stored = ReadAll(*topic, 0);
  ASSERT_EQ(stored.size(), 4u);
  EXPECT_EQ(stored[0].timestamp_ms, stored[2].timestamp_ms);
  EXPECT_EQ(stored[3].timestamp_ms, clock_.NowMs());
  EXPECT_EQ(stored[3].value, "d");
}

TEST_F(TopicTest, KeyedMessagesGoToTheirHashPartitionAndKeylessRoundRobin) {
  TopicConfig c;
  c.partitions = 4;
  auto topic = Make(c);
  std::vector<Record> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(Msg("v", "", absl::StrCat("user-", i % 5)));
  for (int i = 0; i < 8; ++i) batch.push_back(Msg("keyless"));
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, topic->Publish(batch));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results[i].partition, PartitionForKey(absl::StrCat("user-", i % 5), 4));
  }
  std::vector<int> keyless(4, 0);
  for (int i = 20; i < 28; ++i) ++keyless[results[i].partition];
  EXPECT_EQ(keyless, (std::vector<int>{2, 2, 2, 2}));
  // Same key, same partition: per-key order is the publish order.
  std::vector<Record> p = ReadAll(*topic, PartitionForKey("user-0", 4));
  int user0 = 0;
  for (const Record& r : p) {
    if (r.key == "user-0") {
      EXPECT_TRUE(r.has_key());
      ++user0;
    }
  }
  EXPECT_EQ(user0, 4);
}

TEST_F(TopicTest, EmptyBatchIsInvalidArgument) {
  auto topic = Make(TopicConfig{});
  EXPECT_THAT(topic->Publish({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TopicTest, OversizeMessageIsRejectedAndNothingOfTheBatchIsStored) {
  TopicConfig c;
  c.max_message_bytes = 100;
  auto topic = Make(c);
  Record big = Msg(std::string(90, 'x'), "idem-big", "0123456789x");  // 90 + 8 + 11 = 109
  EXPECT_THAT(topic->Publish({Msg("small", "idem-small"), big}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("message 1"), HasSubstr("109 bytes"),
                             HasSubstr("max_message_bytes 100"))));
  EXPECT_EQ(topic->partition(0)->NextOffset(), 0);
  EXPECT_EQ(topic->dedup_index()->size(), 0u);
  EXPECT_EQ(topic->dedup_index()->pending(), 0u);
  Record exact = Msg(std::string(100, 'x'));
  ONCE_EXPECT_OK(topic->Publish({exact}));
}

TEST_F(TopicTest, RepeatWithinTheWindowReturnsTheFirstOffsetAndStoresNothing) {
  TopicConfig c;
  c.partitions = 3;
  auto topic = Make(c);
  ONCE_ASSERT_OK_AND_ASSIGN(auto first, topic->Publish({Msg("a", "id-1"), Msg("b", "id-2")}));
  clock_.Advance(c.dedup_window_ms);  // still within
  ONCE_ASSERT_OK_AND_ASSIGN(auto again, topic->Publish({Msg("b2", "id-2"), Msg("c", "id-3")}));
  EXPECT_TRUE(again[0].duplicate);
  EXPECT_EQ(again[0].partition, first[1].partition);
  EXPECT_EQ(again[0].offset, first[1].offset);
  EXPECT_FALSE(again[1].duplicate);
  int64_t stored = 0;
  for (int p = 0; p < 3; ++p) stored += topic->partition(p)->NextOffset();
  EXPECT_EQ(stored, 3);
}

TEST_F(TopicTest, RepeatInsideOneBatchIsADuplicateOfItsFirstMessage) {
  auto topic = Make(TopicConfig{});
  ONCE_ASSERT_OK_AND_ASSIGN(
      auto results, topic->Publish({Msg("a", "x"), Msg("b", "y"), Msg("a again", "x"), Msg("z")}));
  EXPECT_EQ(results[0].offset, 0);
  EXPECT_EQ(results[1].offset, 1);
  EXPECT_TRUE(results[2].duplicate);
  EXPECT_EQ(results[2].offset, 0);
  EXPECT_EQ(results[3].offset, 2);
  EXPECT_EQ(topic->partition(0)->NextOffset(), 3);
}

TEST_F(TopicTest, RepeatAfterTheWindowIsStoredAgain) {
  TopicConfig c;
  c.dedup_window_ms = 1000;
  auto topic = Make(c);
  ONCE_ASSERT_OK(topic->Publish({Msg("a", "x")}));
  clock_.Advance(1001);
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, topic->Publish({Msg("a", "x")}));
  EXPECT_FALSE(results[0].duplicate);
  EXPECT_EQ(results[0].offset, 1);
  ONCE_ASSERT_OK_AND_ASSIGN(results, topic->Publish({Msg("a", "x")}));
  EXPECT_TRUE(results[0].duplicate);
  EXPECT_EQ(results[0].offset, 1);
}

TEST_F(TopicTest, CountBoundEvictsTheOldestKeys) {
  TopicConfig c;
  c.dedup_max_entries = 2;
  auto topic = Make(c);
  ONCE_ASSERT_OK(topic->Publish({Msg("1", "k1")}));
  ONCE_ASSERT_OK(topic->Publish({Msg("2", "k2")}));
  ONCE_ASSERT_OK(topic->Publish({Msg("3", "k3")}));
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, topic->Publish({Msg("3", "k3"), Msg("1", "k1")}));
  EXPECT_TRUE(results[0].duplicate);
  EXPECT_FALSE(results[1].duplicate);  // k1 was evicted
}

TEST_F(TopicTest, DedupDisabledStoresEveryRepeat) {
  TopicConfig c;
  c.dedup_window_ms = 0;
  auto topic = Make(c);
  EXPECT_EQ(topic->dedup_index(), nullptr);
  ONCE_ASSERT_OK(topic->Publish({Msg("a", "x"), Msg("a", "x")}));
  ONCE_ASSERT_OK(topic->Publish({Msg("a", "x")}));
  EXPECT_EQ(topic->partition(0)->NextOffset(), 3);
}

TEST_F(TopicTest, ConcurrentPublishersOfTheSameKeysStoreEachOnce) {
  TopicConfig c;
  c.partitions = 4;
  auto topic = Make(c);
  constexpr int kThreads = 8;
  constexpr int kKeys = 100;
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::vector<PublishResult>> seen;  // guarded by mu
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeys; ++i) {
        const int k = (t % 2 == 0) ? i : kKeys - 1 - i;
        std::vector<Record> batch = {Msg("v", absl::StrCat("id-", k)),
                                     Msg("v", absl::StrCat("id-", (k + 7) % kKeys))};
        absl::StatusOr<std::vector<PublishResult>> r = topic->Publish(std::move(batch));
        ASSERT_THAT(r, IsOk());
        absl::MutexLock lock(&mu);
        seen[absl::StrCat("id-", k)].push_back((*r)[0]);
        seen[absl::StrCat("id-", (k + 7) % kKeys)].push_back((*r)[1]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  int64_t stored = 0;
  for (int p = 0; p < 4; ++p) stored += topic->partition(p)->NextOffset();
  EXPECT_EQ(stored, kKeys);
  for (const auto& [key, results] : seen) {
    int originals = 0;
    for (const PublishResult& r : results) {
      EXPECT_EQ(r.partition, results[0].partition) << key;
      EXPECT_EQ(r.offset, results[0].offset) << key;
      originals += r.duplicate ? 0 : 1;
    }
    EXPECT_EQ(originals, 1) << key;
  }
  EXPECT_EQ(topic->dedup_index()->pending(), 0u);
}

TEST_F(TopicTest, BudgetFullIsResourceExhaustedAndTheKeyIsReleased) {
  const int64_t charge = MemoryCharge(Msg(std::string(100, 'x'), "id-1"));
  auto topic = Make(TopicConfig{}, charge);
  EXPECT_THAT(topic->Publish({Msg(std::string(101, 'x'), "id-1")}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("topic 't' partition 0")));
  EXPECT_EQ(topic->dedup_index()->pending(), 0u);
  // The key was released: a retry that fits is stored, not a duplicate.
  ONCE_ASSERT_OK_AND_ASSIGN(auto results, topic->Publish({Msg(std::string(100, 'x'), "id-1")}));
  EXPECT_FALSE(results[0].duplicate);
  EXPECT_EQ(results[0].offset, 0);
}

TEST_F(TopicTest, PartialFailureNamesThePartitionAndRegistersOnlyStoredKeys) {
  TopicConfig c;
  c.partitions = 2;
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto fail = std::make_shared<std::atomic<bool>>(true);
  std::vector<std::unique_ptr<Log>> logs;
  logs.push_back(NewMemoryLog(budget.get()));
  logs.push_back(std::make_unique<FailingLog>(budget.get(), fail));
  ONCE_ASSERT_OK_AND_ASSIGN(auto topic,
                            PartitionedTopic::Open("t", c, std::move(logs), &clock_, budget));
  // Keyless messages go round-robin: the first to partition 0, the second to 1.
  std::vector<Record> batch = {Msg("a", "id-a"), Msg("b", "id-b")};
  EXPECT_THAT(topic->Publish(batch), StatusIs(absl::StatusCode::kUnavailable,
                                              AllOf(HasSubstr("partition 1"), HasSubstr("injected"),
                                                    HasSubstr("partitions 0 were stored"))));
  EXPECT_EQ(topic->partition(0)->NextOffset(), 1);
  fail->store(false);
  ONCE_ASSERT_OK_AND_ASSIGN(auto retry, topic->Publish(batch));
  EXPECT_TRUE(retry[0].duplicate);
  EXPECT_EQ(retry[0].partition, 0);
  EXPECT_FALSE(retry[1].duplicate);
  EXPECT_EQ(topic->partition(0)->NextOffset() + topic->partition(1)->NextOffset(), 2);
}

TEST_F(TopicTest, OpenRebuildsDedupFromTheLastWindowOfRecords) {
  TopicConfig c;
  c.partitions = 2;
  c.dedup_window_ms = 1000;
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  std::vector<std::unique_ptr<Log>> logs;
  for (int p = 0; p < 2; ++p) logs.push_back(NewMemoryLog(budget.get()));
  const int64_t now = clock_.NowMs();
  auto stamped = [](std::string idem, int64_t t) {
    Record r = Msg("v", std::move(idem));
    r.timestamp_ms = t;
    return r;
  };
  // Partition 0: an expired key, then two live ones. Partition 1: a later
  // copy of "dup", which must not override the earlier one on partition 0.
  ONCE_ASSERT_OK(logs[0]->Append(
      {stamped("old", now - 1001), stamped("dup", now - 500), stamped("live", now - 400)}));
  ONCE_ASSERT_OK(logs[1]->Append({stamped("x", now - 2000), stamped("dup", now - 100)}));
  ONCE_ASSERT_OK_AND_ASSIGN(auto topic,
                            PartitionedTopic::Open("t", c, std::move(logs), &clock_, budget));
  EXPECT_EQ(topic->dedup_index()->size(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(auto r,
                            topic->Publish({Msg("v", "dup"), Msg("v", "live"), Msg("v", "old")}));
  EXPECT_TRUE(r[0].duplicate);
  EXPECT_EQ(r[0].partition, 0);
  EXPECT_EQ(r[0].offset, 1);
  EXPECT_TRUE(r[1].duplicate);
  EXPECT_EQ(r[1].offset, 2);
  EXPECT_FALSE(r[2].duplicate);
}

TEST_F(TopicTest, ReadOfAPartitionOutOfRangeIsInvalidArgument) {
  TopicConfig c;
  c.partitions = 2;
  auto topic = Make(c);
  EXPECT_THAT(topic->Read(2, 0, ReadLimits{}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("partition 2"), HasSubstr("has 2 partitions"))));
  EXPECT_THAT(topic->Read(-1, 0, ReadLimits{}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(topic->partition(2), nullptr);
  EXPECT_EQ(topic->partition(-1), nullptr);
  EXPECT_EQ(topic->partition_count(), 2);
}

TEST_F(TopicTest, DescribeReportsEveryPartition) {
  TopicConfig c;
  c.partitions = 3;
  auto topic = Make(c);
  ONCE_ASSERT_OK(topic->Publish({Msg("a", "", "user-42"), Msg("b", "", "user-42")}));
  TopicDescription d = topic->Describe();
  EXPECT_EQ(d.name, "t");
  EXPECT_EQ(d.config.partitions, 3);
  ASSERT_EQ(d.partitions.size(), 3u);
  const int p = PartitionForKey("user-42", 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(d.partitions[i].partition, i);
    EXPECT_EQ(d.partitions[i].stats.next_offset, i == p ? 2 : 0);
  }
}

TEST_F(TopicTest, RetentionRemovesOldDataAndReadsBelowTheFirstOffsetSaySo) {
  TopicConfig c;
  c.retention_ms = 60'000;
  auto topic = Make(c);
  ONCE_ASSERT_OK(topic->Publish({Msg("old-1"), Msg("old-2")}));
  clock_.Advance(30'000);
  ONCE_ASSERT_OK(topic->Publish({Msg("new")}));
  clock_.Advance(30'001);
  ONCE_ASSERT_OK(topic->RunMaintenance(clock_.NowMs()));
  EXPECT_EQ(topic->partition(0)->FirstOffset(), 2);
  EXPECT_THAT(topic->Read(0, 0, ReadLimits{}),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("offset 0 is below the first retained offset 2")));
  ONCE_ASSERT_OK_AND_ASSIGN(auto rest, topic->Read(0, 2, ReadLimits{}));
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].value, "new");
  EXPECT_EQ(budget_->used(), MemoryCharge(rest[0]));
}

TEST_F(TopicTest, MaintenanceExpiresDedupEntries) {
  TopicConfig c;
  c.dedup_window_ms = 1000;
  auto topic = Make(c);
  ONCE_ASSERT_OK(topic->Publish({Msg("a", "x"), Msg("b", "y")}));
  EXPECT_EQ(topic->dedup_index()->size(), 2u);
  clock_.Advance(1001);
  ONCE_ASSERT_OK(topic->RunMaintenance(clock_.NowMs()));
  EXPECT_EQ(topic->dedup_index()->size(), 0u);
}

TEST(PartitionedTopicOpenTest, RejectsAMismatchedNumberOfLogs) {
  FakeClock clock;
  MemoryBudget budget(1 << 20);
  TopicConfig c;
  c.partitions = 2;
  std::vector<std::unique_ptr<Log>> logs;
  logs.push_back(NewMemoryLog(&budget));
  EXPECT_THAT(PartitionedTopic::Open("t", c, std::move(logs), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 partitions but 1 logs")));
}

}  // namespace
}  // namespace once::broker
