#include "coordinator/txn_store.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coordinator_sql.h"
#include "schema/sqlite.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::FakeClock;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TxnRecord MakeRecord(const std::string& txn, size_t messages = 2) {
  TxnRecord r;
  r.txn = txn;
  r.topic = "orders";
  r.group = "billing";
  r.participant = "p1";
  r.epoch = 1;
  r.generation = 3;
  r.created_ms = 1000;
  for (size_t i = 0; i < messages; ++i) {
    r.messages.push_back(TxnMessageRef{static_cast<uint32_t>(i % 3), 10 + i});
  }
  return r;
}

class TxnStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/txn_store_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/coordinator.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TxnStoreOptions Options() {
    TxnStoreOptions options;
    options.clock = &clock_;
    return options;
  }
  std::unique_ptr<TxnStore> OpenStore(TxnStoreOptions options) {
    absl::StatusOr<std::unique_ptr<TxnStore>> store = TxnStore::Open(path_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  std::unique_ptr<TxnStore> OpenStore() { return OpenStore(Options()); }

  FakeClock clock_;
  std::string dir_;
  std::string path_;
};

TEST_F(TxnStoreTest, EpochStartsAtZeroAndBumpsDurably) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->epoch(), 0u);
    ONCE_ASSERT_OK_AND_ASSIGN(uint64_t e1, store->BumpEpoch());
    EXPECT_EQ(e1, 1u);
    ONCE_ASSERT_OK_AND_ASSIGN(uint64_t e2, store->BumpEpoch());
    EXPECT_EQ(e2, 2u);
    EXPECT_EQ(store->epoch(), 2u);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->epoch(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(uint64_t e3, store->BumpEpoch());
  EXPECT_EQ(e3, 3u);
}

TEST_F(TxnStoreTest, CommitRoundTripsEveryField) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  TxnRecord r = MakeRecord("1.1", 5);
  r.reason = "why not";
  r.attempts = 2;
  ONCE_ASSERT_OK(store->RecordCommit(r));
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find("1.1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->txn, "1.1");
  EXPECT_EQ(found->topic, "orders");
  EXPECT_EQ(found->group, "billing");
  EXPECT_EQ(found->participant, "p1");
  EXPECT_EQ(found->epoch, 1u);
  EXPECT_EQ(found->generation, 3u);
  EXPECT_EQ(found->state, TxnState::kCommitted);
  EXPECT_EQ(found->messages, r.messages);
  EXPECT_EQ(found->created_ms, 1000);
  EXPECT_EQ(found->decided_ms, clock_.NowMs());  // 0 was filled in
  EXPECT_EQ(found->done_ms, 0);
  EXPECT_EQ(found->attempts, 2u);
  EXPECT_EQ(found->reason, "why not");
  EXPECT_FALSE(found->broker_deleted);

  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> missing, store->Find("1.2"));
  EXPECT_FALSE(missing.has_value());
}

TEST_F(TxnStoreTest, MalformedAndDuplicateRecordsFailAloneInTheirBatch) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  EXPECT_THAT(store->RecordCommit(MakeRecord("1.1")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("1.1")));
  TxnRecord voted = MakeRecord("1.2");
  voted.state = TxnState::kVotedYes;
  EXPECT_THAT(store->RecordCommit(voted),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("voted_yes")));
  EXPECT_THAT(store->RecordCommit(MakeRecord("")), StatusIs(absl::StatusCode::kInvalidArgument));
  TxnRecord no_topic = MakeRecord("1.3");
  no_topic.topic.clear();
  EXPECT_THAT(store->RecordCommit(no_topic), StatusIs(absl::StatusCode::kInvalidArgument));

  // One bad record among good ones in the same batch: only it fails.
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  absl::BlockingCounter pending(3);
  auto count = [&](absl::Status s) {
    (s.ok() ? ok : failed)++;
    pending.DecrementCount();
  };
  store->SubmitCommit(MakeRecord("1.4"), count);
  store->SubmitCommit(MakeRecord("1.1"), count);  // duplicate
  store->SubmitCommit(MakeRecord("1.5"), count);
  pending.Wait();
  EXPECT_EQ(ok.load(), 2);
  EXPECT_EQ(failed.load(), 1);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> all, store->List(std::nullopt, 0));
  EXPECT_EQ(all.size(), 3u);
  for (const TxnRecord& r : all) EXPECT_EQ(r.messages.size(), 2u) << r.txn;
}

TEST_F(TxnStoreTest, GroupCommitBatchesDecisionsOfManyThreads) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  absl::BlockingCounter pending(kThreads * kPerThread);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store->SubmitCommit(MakeRecord(absl::StrCat("1.", t * kPerThread + i)),
                            [&](absl::Status s) {
                              if (!s.ok()) failures++;
                              pending.DecrementCount();
                            });
      }
    });
  }
  for (auto& t : threads) t.join();
  pending.Wait();
  EXPECT_EQ(failures.load(), 0);
  TxnStore::Stats stats = store->stats();
  EXPECT_EQ(stats.decisions, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_GE(stats.commits, 1u);
  EXPECT_LT(stats.commits, stats.decisions) << "no two decisions shared a SQLite transaction";
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> unfinished, store->LoadUnfinished());
  EXPECT_EQ(unfinished.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(TxnStoreTest, MaxBatchBoundsOneTransaction) {
  TxnStoreOptions options = Options();
  options.max_batch = 4;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  constexpr int kCount = 40;
  absl::BlockingCounter pending(kCount);
  for (int i = 0; i < kCount; ++i) {
    store->SubmitCommit(MakeRecord(absl::StrCat("1.", i)), [&](absl::Status s) {
      EXPECT_THAT(s, IsOk());
      pending.DecrementCount();
    });
  }
  pending.Wait();
  EXPECT_GE(store->stats().commits, static_cast<uint64_t>(kCount / 4));
}

TEST_F(TxnStoreTest, ReopenKeepsCommittedNotDoneAndRemovesDone) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    for (const char* id : {"1.1", "1.2", "1.3"}) {
      clock_.Advance(10);
      ONCE_ASSERT_OK(store->RecordCommit(MakeRecord(id)));
    }
    ONCE_ASSERT_OK(store->RecordDone("1.2"));
    ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> done, store->Find("1.2"));
    ASSERT_TRUE(done.has_value());  // removal is lazy
    EXPECT_EQ(done->state, TxnState::kDone);
    EXPECT_EQ(done->done_ms, clock_.NowMs());
    EXPECT_EQ(store->stats().done_marked, 1u);
    store->Close();
    EXPECT_EQ(store->stats().removed, 1u);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> unfinished, store->LoadUnfinished());
  ASSERT_EQ(unfinished.size(), 2u);
  EXPECT_EQ(unfinished[0].txn, "1.1");  // oldest decision first
  EXPECT_EQ(unfinished[1].txn, "1.3");
  EXPECT_EQ(unfinished[1].messages.size(), 2u);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> removed, store->Find("1.2"));
  EXPECT_FALSE(removed.has_value());
}

TEST_F(TxnStoreTest, DoneRecordsPastTheBatchAreRemovedOldestFirstWithTheGroupCommit) {
  TxnStoreOptions options = Options();
  options.remove_batch = 2;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(10);  // decided in this order
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord(absl::StrCat("1.", i))));
  }
  ONCE_ASSERT_OK(store->RecordDone("1.0"));
  ONCE_ASSERT_OK(store->RecordDone("1.1"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> done, store->List(TxnState::kDone, 0));
  EXPECT_EQ(done.size(), 2u);  // kept: no more than remove_batch
  EXPECT_EQ(store->stats().removed, 0u);
  // The third goes past the batch: the oldest done record is removed in
  // the same SQLite transaction that marks it, no commit of its own.
  const uint64_t commits = store->stats().commits;
  ONCE_ASSERT_OK(store->RecordDone("1.2"));
  EXPECT_EQ(store->stats().commits, commits + 1);
  EXPECT_EQ(store->stats().removed, 1u);
  ONCE_ASSERT_OK_AND_ASSIGN(done, store->List(TxnState::kDone, 0));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].txn, "1.1");
  EXPECT_EQ(done[1].txn, "1.2");
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> gone, store->Find("1.0"));
  EXPECT_FALSE(gone.has_value());
  // Removed with its runs; the others keep theirs.
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t rows, db->QueryInt64("SELECT (SELECT COUNT(*) FROM txn_runs) + "
                                                         "(SELECT COUNT(*) FROM txn_messages)"));
  EXPECT_EQ(rows, 8);  // 1.1 to 1.4, two runs each
  store->Close();
  EXPECT_EQ(store->stats().removed, 3u);  // the rest at Close
}

TEST_F(TxnStoreTest, ARemovalBacklogGoesInChunksOfBoundedSize) {
  // Done records left by a crash (the store closed without removing them)
  // count at open, and go a chunk per group commit, not all at once.
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 6; ++i) {
      clock_.Advance(10);
      ONCE_ASSERT_OK(store->RecordCommit(MakeRecord(absl::StrCat("1.", i))));
    }
  }
  {
    // Done, not removed yet: what a crash leaves (Close would remove them).
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK(db->Exec("UPDATE txns SET state = 4, done_ms = 1"));
  }
  TxnStoreOptions options = Options();
  options.remove_batch = 2;
  options.remove_chunk = 1;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> done, store->List(TxnState::kDone, 0));
  ASSERT_EQ(done.size(), 6u);
  // Each group commit (marking nothing done) removes one: chunk 1.
  for (int i = 0; i < 4; ++i) {
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord(absl::StrCat("2.", i))));
    EXPECT_EQ(store->stats().removed, static_cast<uint64_t>(i + 1));
  }
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("2.4")));
  EXPECT_EQ(store->stats().removed, 4u);  // two left: remove_batch
  ONCE_ASSERT_OK_AND_ASSIGN(done, store->List(TxnState::kDone, 0));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].txn, "1.4");  // the newest kept
  EXPECT_EQ(done[1].txn, "1.5");
}

TEST_F(TxnStoreTest, DoneTwiceIsFineDoneOfUnknownIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  ONCE_ASSERT_OK(store->RecordDone("1.1"));
  ONCE_ASSERT_OK(store->RecordDone("1.1"));
  EXPECT_THAT(store->RecordDone("9.9"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("9.9")));
}

TEST_F(TxnStoreTest, MarkBrokerDeleted) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  ONCE_ASSERT_OK(store->MarkBrokerDeleted("1.1"));
  ONCE_ASSERT_OK(store->MarkBrokerDeleted("1.1"));  // idempotent
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find("1.1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(found->broker_deleted);
  EXPECT_THAT(store->MarkBrokerDeleted("2.2"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("2.2")));
}

TEST_F(TxnStoreTest, BatchMarkingIsAllOrNothing) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.2")));
  EXPECT_THAT(store->MarkBrokerDeletedBatch({"1.1", "7.7", "1.2"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("7.7")));
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> one, store->Find("1.1"));
  ASSERT_TRUE(one.has_value());
  EXPECT_FALSE(one->broker_deleted);  // rolled back with the unknown one
  ONCE_ASSERT_OK(store->MarkBrokerDeletedBatch({"1.1", "1.2"}));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> all, store->LoadUnfinished());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(all[0].broker_deleted);
  EXPECT_TRUE(all[1].broker_deleted);
  std::vector<AuditEntry> entries(3);
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].txn = absl::StrCat("1.", i);
    entries[i].action = "resolve";
    entries[i].actor = "test";
  }
  ONCE_ASSERT_OK(store->AuditBatch(entries));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> log, store->AuditLog(std::nullopt));
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].txn, "1.2");
  EXPECT_EQ(log[2].at_ms, clock_.NowMs());
}

TEST_F(TxnStoreTest, AttemptsAreCountedLazilyAndSurviveClose) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
    ONCE_ASSERT_OK(store->RecordAttempt("1.1"));
    ONCE_ASSERT_OK(store->RecordAttempt("1.1"));
    ONCE_ASSERT_OK(store->RecordAttempt("unknown"));  // ignored
    store->Close();
    EXPECT_THAT(store->RecordAttempt("1.1"), StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find("1.1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->attempts, 2u);
}

TEST_F(TxnStoreTest, DoneMarkingsRideWithTheNextDecision) {
  TxnStoreOptions options = Options();
  options.bookkeeping_delay = absl::Hours(1);  // only a decision or Close writes them
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  ASSERT_EQ(store->stats().commits, 1u);
  absl::Notification marked;
  absl::Status marking = absl::UnknownError("not run");
  store->SubmitDone("1.1", [&](absl::Status s) {
    marking = s;
    marked.Notify();
  });
  ONCE_ASSERT_OK(store->RecordAttempt("1.1"));
  // Alone they wait (an hour): the decision below takes them along.
  EXPECT_FALSE(marked.HasBeenNotified());
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.2")));
  ASSERT_TRUE(marked.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ONCE_EXPECT_OK(marking);
  const TxnStore::Stats stats = store->stats();
  EXPECT_EQ(stats.commits, 2u);  // one SQLite transaction for the marking and 1.2
  EXPECT_EQ(stats.decisions, 2u);
  EXPECT_EQ(stats.done_marked, 1u);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find("1.1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state, TxnState::kDone);
  EXPECT_EQ(found->attempts, 1u);
}

TEST_F(TxnStoreTest, CloseWritesDelayedDoneMarkingsAtOnce) {
  {
    TxnStoreOptions options = Options();
    options.bookkeeping_delay = absl::Hours(1);
    auto store = OpenStore(options);
    ASSERT_NE(store, nullptr);
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.2")));
    absl::Notification marked;
    store->SubmitDone("1.1", [&](absl::Status s) {
      ONCE_EXPECT_OK(s);
      marked.Notify();
    });
    store->Close();  // drains the queue without waiting out the delay
    EXPECT_TRUE(marked.HasBeenNotified());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> unfinished, store->LoadUnfinished());
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].txn, "1.2");
}

TEST_F(TxnStoreTest, AuditLogKeepsEveryEntry) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->Audit("1.1", "force_commit", "participant gone", "once-recover"));
  clock_.Advance(5);
  ONCE_ASSERT_OK(store->Audit("1.2", "force_abort", "unknown txn", "once-recover"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> all, store->AuditLog(std::nullopt));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].txn, "1.1");
  EXPECT_EQ(all[0].action, "force_commit");
  EXPECT_EQ(all[0].reason, "participant gone");
  EXPECT_EQ(all[0].actor, "once-recover");
  EXPECT_EQ(all[1].at_ms, all[0].at_ms + 5);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> one, store->AuditLog("1.2"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].action, "force_abort");
}

TEST_F(TxnStoreTest, ListFiltersOrdersAndLimits) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(1);
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord(absl::StrCat("1.", i))));
  }
  ONCE_ASSERT_OK(store->RecordDone("1.3"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> committed, store->List(TxnState::kCommitted, 2));
  ASSERT_EQ(committed.size(), 2u);
  EXPECT_EQ(committed[0].txn, "1.0");
  EXPECT_EQ(committed[1].txn, "1.1");
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> done, store->List(TxnState::kDone, 0));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].txn, "1.3");
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> aborted, store->List(TxnState::kAborted, 0));
  EXPECT_TRUE(aborted.empty());
}

TEST_F(TxnStoreTest, CallbacksMayUseTheStore) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::Notification finished;
  absl::Status inner;
  store->SubmitCommit(MakeRecord("1.1"), [&](absl::Status s) {
    ASSERT_THAT(s, IsOk());
    inner = store->MarkBrokerDeleted("1.1");
    if (inner.ok()) inner = store->Find("1.1").status();
    finished.Notify();
  });
  finished.WaitForNotification();
  ONCE_EXPECT_OK(inner);
}

TEST_F(TxnStoreTest, SubmitAfterCloseFails) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  store->Close();
  store->Close();  // idempotent
  EXPECT_THAT(store->RecordCommit(MakeRecord("1.1")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  EXPECT_THAT(store->RecordDone("1.1"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(TxnStoreTest, SynchronousNormalWorksToo) {
  TxnStoreOptions options = Options();
  options.synchronous_full = false;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1")));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> unfinished, store->LoadUnfinished());
  EXPECT_EQ(unfinished.size(), 1u);
}

// ---- opening errors

TEST_F(TxnStoreTest, BadPathIsAClearError) {
  EXPECT_THAT(TxnStore::Open(dir_ + "/no/such/dir/coordinator.db", Options()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("/no/such/dir")));
  EXPECT_THAT(TxnStore::Open(dir_, Options()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
  EXPECT_THAT(TxnStore::Open("", Options()).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  TxnStoreOptions no_create = Options();
  no_create.create_if_missing = false;
  EXPECT_THAT(TxnStore::Open(path_, no_create).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path_)));
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(TxnStoreTest, CorruptFileIsDataLoss) {
  {
    std::ofstream out(path_, std::ios::binary);
    for (int i = 0; i < 512; ++i) out << "this is not a database ";
  }
  EXPECT_THAT(TxnStore::Open(path_, Options()).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path_)));
}

TEST_F(TxnStoreTest, FutureSchemaVersionIsRefused) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK(
        db->Exec(absl::StrCat("PRAGMA user_version=", TxnStore::LatestSchemaVersion() + 1)));
  }
  EXPECT_THAT(TxnStore::Open(path_, Options()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newer")));
}

TEST_F(TxnStoreTest, HalfARecordIsDataLossNotAShortBatch) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1", 3)));
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK(db->Exec("DELETE FROM txn_runs WHERE seq = 2"));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->Find("1.1").status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("2 messages in its rows")));
  EXPECT_THAT(store->LoadUnfinished().status(), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(TxnRunsTest, ConsecutiveOffsetsOfOnePartitionShareARun) {
  EXPECT_TRUE(ToRuns({}).empty());
  EXPECT_THAT(ToRuns({{0, 5}, {0, 6}, {0, 7}, {1, 8}, {1, 9}, {1, 11}, {1, 11}, {0, 8}}),
              ElementsAre(TxnMessageRun{0, 5, 3}, TxnMessageRun{1, 8, 2}, TxnMessageRun{1, 11, 1},
                          TxnMessageRun{1, 11, 1}, TxnMessageRun{0, 8, 1}));
}

TEST_F(TxnStoreTest, ABatchIsStoredAsRunsAndReadBackInOrder) {
  TxnRecord r = MakeRecord("1.1", 0);
  for (uint64_t o = 100; o < 1100; ++o) r.messages.push_back({2, o});
  r.messages.push_back({0, 7});
  r.messages.push_back({2, 1100});  // after another partition: a run of its own
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ONCE_ASSERT_OK(store->RecordCommit(r));
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t runs, db->QueryInt64("SELECT COUNT(*) FROM txn_runs"));
    EXPECT_EQ(runs, 3);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> found, store->Find("1.1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->messages, r.messages);
}

TEST_F(TxnStoreTest, ARunBeyondTheMessageCountIsDataLoss) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("1.1", 3)));
  }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK(db->Exec("UPDATE txn_runs SET count = 9223372036854775807 WHERE seq = 1"));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->Find("1.1").status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("beyond its record's")));
}

TEST_F(TxnStoreTest, BatchesWrittenByVersion1AreReadAfterTheMigration) {
  {
    // A coordinator.db as version 1 wrote it: one txn_messages row per message.
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
    ONCE_ASSERT_OK_AND_ASSIGN(std::vector<sqlite::Migration> migrations,
                              sqlite::ParseMigrations(schema::CoordinatorSql(), "coordinator.sql"));
    ASSERT_GE(migrations.size(), 2u);
    ONCE_ASSERT_OK(sqlite::Migrate(db.get(), absl::MakeConstSpan(migrations.data(), 1)).status());
    ONCE_ASSERT_OK(db->Exec(
        "INSERT INTO txns (txn, topic, grp, participant, epoch, generation, state, "
        "message_count, created_ms, decided_ms) VALUES ('1.1', 'orders', 'billing', 'p1', 1, 3, "
        "3, 3, 1000, 1001);"
        "INSERT INTO txn_messages (txn, seq, partition_id, msg_offset) VALUES "
        "('1.1', 0, 0, 10), ('1.1', 1, 0, 11), ('1.1', 2, 1, 4);"));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnRecord> unfinished, store->LoadUnfinished());
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_THAT(unfinished[0].messages,
              ElementsAre(TxnMessageRef{0, 10}, TxnMessageRef{0, 11}, TxnMessageRef{1, 4}));
  ONCE_ASSERT_OK(store->RecordCommit(MakeRecord("2.1")));  // new ones as runs beside it
  ONCE_ASSERT_OK(store->RecordDone("1.1"));
  ONCE_ASSERT_OK(store->RemoveDone().status());
  ONCE_ASSERT_OK_AND_ASSIGN(unfinished, store->LoadUnfinished());
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].messages, MakeRecord("2.1").messages);
}

TEST_F(TxnStoreTest, SchemaIsDocumentedAndVersioned) {
  EXPECT_GE(TxnStore::LatestSchemaVersion(), 1);
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path_));
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t version, db->UserVersion());
  EXPECT_EQ(version, TxnStore::LatestSchemaVersion());
  ONCE_ASSERT_OK_AND_ASSIGN(auto mode, db->Prepare("PRAGMA journal_mode"));
  ONCE_ASSERT_OK_AND_ASSIGN(bool row, mode.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(std::string(mode.ColumnText(0)), "wal");
}

}  // namespace
}  // namespace once::coordinator
