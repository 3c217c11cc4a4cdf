#include "broker/dedup_index.h"

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::broker {
namespace {

using Location = DedupIndex::Location;
using ::testing::ElementsAre;
using ::testing::Optional;

constexpr int64_t kWindow = 1000;

std::vector<std::string> Keys(std::initializer_list<const char*> keys) {
  return std::vector<std::string>(keys.begin(), keys.end());
}

TEST(DedupIndexTest, FirstReserveMissesThenCommittedKeyHits) {
  DedupIndex index(kWindow, 100);
  EXPECT_THAT(index.Reserve(Keys({"a", "b"}), 0), ElementsAre(std::nullopt, std::nullopt));
  EXPECT_EQ(index.pending(), 2u);
  index.Commit({{"a", Location{1, 10}}, {"b", Location{2, 20}}}, 0);
  EXPECT_EQ(index.pending(), 0u);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(index.Reserve(Keys({"b", "a", "c"}), 5),
              ElementsAre(Optional(Location{2, 20}), Optional(Location{1, 10}), std::nullopt));
  index.Release(Keys({"c"}));
  EXPECT_EQ(index.pending(), 0u);
}

TEST(DedupIndexTest, ReleasedKeyIsStoredByTheNextPublisher) {
  DedupIndex index(kWindow, 100);
  EXPECT_THAT(index.Reserve(Keys({"a"}), 0), ElementsAre(std::nullopt));
  index.Release(Keys({"a"}));
  EXPECT_EQ(index.size(), 0u);
  EXPECT_THAT(index.Reserve(Keys({"a"}), 1), ElementsAre(std::nullopt));
  index.Commit({{"a", Location{0, 3}}}, 1);
  EXPECT_THAT(index.Reserve(Keys({"a"}), 2), ElementsAre(Optional(Location{0, 3})));
}

TEST(DedupIndexTest, EntryAnswersUntilTheWindowEndsThenTheKeyIsStoredAgain) {
  DedupIndex index(kWindow, 100);
  index.Reserve(Keys({"a"}), 100);
  index.Commit({{"a", Location{0, 1}}}, 100);
  EXPECT_THAT(index.Reserve(Keys({"a"}), 100 + kWindow), ElementsAre(Optional(Location{0, 1})));
  EXPECT_THAT(index.Reserve(Keys({"a"}), 100 + kWindow + 1), ElementsAre(std::nullopt));
  index.Commit({{"a", Location{0, 2}}}, 100 + kWindow + 1);
  EXPECT_THAT(index.Reserve(Keys({"a"}), 100 + kWindow + 2), ElementsAre(Optional(Location{0, 2})));
  EXPECT_EQ(index.size(), 1u);
}

TEST(DedupIndexTest, ExpireFreesOldEntries) {
  DedupIndex index(kWindow, 100);
  index.Reserve(Keys({"a", "b"}), 0);
  index.Commit({{"a", Location{0, 0}}, {"b", Location{0, 1}}}, 0);
  index.Reserve(Keys({"c"}), 500);
  index.Commit({{"c", Location{0, 2}}}, 500);
  index.Expire(kWindow + 1);
  EXPECT_EQ(index.size(), 1u);
  index.Expire(500 + kWindow + 1);
  EXPECT_EQ(index.size(), 0u);
}

TEST(DedupIndexTest, CountBoundEvictsTheOldest) {
  DedupIndex index(kWindow, 3);
  for (int i = 0; i < 5; ++i) {
    const std::string key = absl::StrCat("k", i);
    index.Reserve({key}, i);
    index.Commit({{key, Location{0, i}}}, i);
  }
  EXPECT_EQ(index.size(), 3u);
  // k0 and k1 were evicted: they miss (and are reserved again).
  EXPECT_THAT(
      index.Reserve(Keys({"k0", "k1", "k2", "k4"}), 10),
      ElementsAre(std::nullopt, std::nullopt, Optional(Location{0, 2}), Optional(Location{0, 4})));
  index.Release(Keys({"k0", "k1"}));
}

TEST(DedupIndexTest, RestoredKeyMovesToTheBackOfTheEvictionOrder) {
  DedupIndex index(kWindow, 2);
  index.Reserve(Keys({"a"}), 0);
  index.Commit({{"a", Location{0, 0}}}, 0);
  index.Reserve(Keys({"b"}), 1);
  index.Commit({{"b", Location{0, 1}}}, 1);
  // "a" expires and is stored again at 1001: now "b" is the oldest.
  index.Reserve(Keys({"a"}), kWindow + 1);
  index.Commit({{"a", Location{0, 2}}}, kWindow + 1);
  index.Reserve(Keys({"c"}), kWindow + 1);
  index.Commit({{"c", Location{0, 3}}}, kWindow + 1);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(index.Reserve(Keys({"a", "c"}), kWindow + 1),
              ElementsAre(Optional(Location{0, 2}), Optional(Location{0, 3})));
}

TEST(DedupIndexTest, InsertKeepsTheFirstLiveEntry) {
  DedupIndex index(kWindow, 100);
  index.Insert("a", Location{0, 5}, 10);
  index.Insert("a", Location{1, 9}, 20);  // a later copy within the window
  EXPECT_THAT(index.Reserve(Keys({"a"}), 30), ElementsAre(Optional(Location{0, 5})));
  index.Insert("b", Location{0, 1}, 10);
  index.Insert("b", Location{0, 7}, 10 + kWindow + 1);  // stored again after expiry
  EXPECT_THAT(index.Reserve(Keys({"b"}), 10 + kWindow + 2), ElementsAre(Optional(Location{0, 7})));
}

TEST(DedupIndexTest, ConcurrentReserveWaitsForTheOwnerToCommit) {
  DedupIndex index(kWindow, 100);
  ASSERT_THAT(index.Reserve(Keys({"a"}), 0), ElementsAre(std::nullopt));
  std::optional<Location> seen;
  absl::Notification started;
  std::thread waiter([&] {
    started.Notify();
    seen = index.Reserve(Keys({"a"}), 1)[0];
  });
  started.WaitForNotification();
  index.Commit({{"a", Location{4, 44}}}, 0);
  waiter.join();
  EXPECT_THAT(seen, Optional(Location{4, 44}));
}

TEST(DedupIndexTest, ConcurrentReserveTakesOverAfterTheOwnerReleases) {
  DedupIndex index(kWindow, 100);
  ASSERT_THAT(index.Reserve(Keys({"a"}), 0), ElementsAre(std::nullopt));
  std::optional<Location> seen = Location{-1, -1};
  std::thread waiter([&] { seen = index.Reserve(Keys({"a"}), 1)[0]; });
  index.Release(Keys({"a"}));
  waiter.join();
  EXPECT_EQ(seen, std::nullopt);  // the waiter now owns the key
  EXPECT_EQ(index.pending(), 1u);
}

// Many publishers race on the same keys; each stores what it reserved.
// Exactly one store per key, and every answer names that store.
TEST(DedupIndexTest, RacingPublishersStoreEachKeyOnce) {
  DedupIndex index(kWindow, 1000);
  constexpr int kThreads = 8;
  constexpr int kKeys = 200;
  std::atomic<int64_t> next_offset{0};
  absl::Mutex mu;
  std::vector<std::vector<Location>> answers(kKeys);  // guarded by mu
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeys; ++i) {
        // Overlapping pairs in opposite orders across threads: a
        // hold-and-wait design would deadlock here.
        const int j = (t % 2 == 0) ? i : kKeys - 1 - i;
        std::vector<std::string> keys = {absl::StrCat("k", j), absl::StrCat("k", (j + 1) % kKeys)};
        std::vector<std::optional<Location>> hits = index.Reserve(keys, 0);
        std::vector<DedupIndex::Stored> stored;
        for (size_t k = 0; k < keys.size(); ++k) {
          Location where;
          if (hits[k].has_value()) {
            where = *hits[k];
          } else {
            where = Location{t, next_offset++};
            stored.push_back({keys[k], where});
          }
          absl::MutexLock lock(&mu);
          answers[(j + k) % kKeys].push_back(where);
        }
        index.Commit(stored, 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(next_offset.load(), kKeys);  // one store per key
  EXPECT_EQ(index.pending(), 0u);
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_EQ(answers[k].size(), static_cast<size_t>(2 * kThreads));
    for (const Location& l : answers[k]) EXPECT_EQ(l, answers[k][0]) << "key k" << k;
  }
}

}  // namespace
}  // namespace once::broker
