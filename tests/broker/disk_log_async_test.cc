// DiskLog::AppendAsync: group commit for appends whose callers do not wait.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/disk_log.h"
#include "broker/memory_log.h"
#include "broker/record.h"
#include "broker/record_format.h"
#include "broker/task_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/disk_log_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::broker::disk_log_testing::DiskLogTest;
using ::once::broker::disk_log_testing::IsOkAndHolds;
using ::once::broker::disk_log_testing::MakeRecord;
using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::SizeIs;

// The results of a known number of AppendAsync calls, in completion order.
class Completions {
 public:
  Log::AppendCallback Expect(std::string label) {
    return [this, label = std::move(label)](absl::StatusOr<int64_t> first) {
      absl::MutexLock lock(&mu_);
      results_.push_back({label, std::move(first)});
    };
  }
  // Waits (at most 30 s) until `n` callbacks ran; false on timeout.
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    const auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return results_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }
  std::vector<std::pair<std::string, absl::StatusOr<int64_t>>> results() {
    absl::MutexLock lock(&mu_);
    return results_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<std::string, absl::StatusOr<int64_t>>> results_ ABSL_GUARDED_BY(mu_);
};

TEST_F(DiskLogTest, AsyncAndBlockingAppendsShareSyncsAndAllSurviveAReopen) {
  constexpr int kBlockingThreads = 3;
  constexpr int kChains = 4;  // async appenders, each queuing its next from its callback
  constexpr int kPerAppender = 60;
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  o.segment_bytes = 8 << 10;  // rolls happen under concurrency too
  TaskPool flusher;
  o.executor = flusher.AsExecutor();
  absl::Mutex mu;
  std::vector<std::vector<int64_t>> chain_offsets(kChains);
  std::vector<std::string> errors;
  int chains_done = 0;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    std::function<void(int, int)> submit = [&](int chain, int i) {
      Record r = MakeRecord(i);
      r.value = absl::StrCat("async-", chain, "/", i);
      log->AppendAsync({r}, i % 2 == 0 ? Log::AsyncStart::kHere : Log::AsyncStart::kExecutor,
                       [&, chain, i](absl::StatusOr<int64_t> first) {
                         {
                           absl::MutexLock lock(&mu);
                           if (!first.ok()) {
                             errors.push_back(first.status().ToString());
                             ++chains_done;
                             return;
                           }
                           // Durable, hence readable, when the callback runs.
                           if (log->NextOffset() <= *first)
                             errors.push_back(absl::StrCat("not readable: ", *first));
                           chain_offsets[chain].push_back(*first);
                           if (i + 1 == kPerAppender) {
                             ++chains_done;
                             return;
                           }
                         }
                         // Not under mu: an append from here may run its
                         // group commit, and this very callback, inline.
                         submit(chain, i + 1);
                       });
    };
    for (int c = 0; c < kChains; ++c) submit(c, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kBlockingThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerAppender; ++i) {
          Record r = MakeRecord(i);
          r.value = absl::StrCat("blocking-", t, "/", i);
          ASSERT_THAT(log->Append({r}), IsOk());
        }
      });
    }
    for (auto& th : threads) th.join();
    {
      absl::MutexLock lock(&mu);
      const auto finished = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return chains_done == kChains; };
      ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&finished), absl::Seconds(30)));
      EXPECT_THAT(errors, ::testing::IsEmpty());
    }
    const LogStats stats = log->Stats();
    constexpr int kTotal = (kBlockingThreads + kChains) * kPerAppender;
    EXPECT_EQ(stats.appends, kTotal);
    EXPECT_EQ(stats.next_offset, kTotal);
    EXPECT_LT(stats.syncs, stats.appends);
    EXPECT_GT(stats.syncs, 0);
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  std::vector<Record> all = ReadAll(*log, 100);
  ASSERT_THAT(all, SizeIs((kBlockingThreads + kChains) * kPerAppender));
  for (int c = 0; c < kChains; ++c) {
    ASSERT_THAT(chain_offsets[c], SizeIs(kPerAppender));
    for (int i = 0; i < kPerAppender; ++i) {
      EXPECT_EQ(all[chain_offsets[c][i]].value, absl::StrCat("async-", c, "/", i));
    }
  }
}

TEST_F(DiskLogTest, DestroyingTheLogWaitsForItsAsyncAppends) {
  constexpr int kAppends = 50;
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  TaskPool flusher;
  o.executor = flusher.AsExecutor();
  Completions completions;
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
    for (int i = 0; i < kAppends; ++i) {
      log->AppendAsync({MakeRecord(i)}, Log::AsyncStart::kExecutor,
                       completions.Expect(absl::StrCat(i)));
    }
  }  // no wait before this: the destructor is what waits
  std::vector<std::pair<std::string, absl::StatusOr<int64_t>>> results = completions.results();
  ASSERT_THAT(results, SizeIs(kAppends));
  for (const auto& [label, first] : results) EXPECT_THAT(first, IsOk()) << label;
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  EXPECT_EQ(log->NextOffset(), kAppends);
}

TEST_F(DiskLogTest, AsyncAppendErrorsReachTheirOwnCallbackOnly) {
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  TaskPool flusher;
  o.executor = flusher.AsExecutor();
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  Completions completions;
  std::vector<Record> oversize(1, MakeRecord(0));
  oversize[0].value.assign(kMaxFrameBodySize + 1, 'x');
  log->AppendAsync({MakeRecord(1)}, Log::AsyncStart::kExecutor, completions.Expect("before"));
  log->AppendAsync(oversize, Log::AsyncStart::kExecutor, completions.Expect("oversize"));
  log->AppendAsync({}, Log::AsyncStart::kExecutor, completions.Expect("empty"));
  log->AppendAsync({MakeRecord(2)}, Log::AsyncStart::kExecutor, completions.Expect("after"));
  ASSERT_TRUE(completions.WaitFor(4));
  absl::flat_hash_map<std::string, absl::StatusOr<int64_t>> by_label;
  for (auto& [label, first] : completions.results()) by_label.emplace(label, first);
  EXPECT_THAT(by_label.at("oversize"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(by_label.at("empty"), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(by_label.at("before"), IsOk());
  ASSERT_THAT(by_label.at("after"), IsOk());
  // The refused batches took no offsets.
  EXPECT_EQ(*by_label.at("before"), 0);
  EXPECT_EQ(*by_label.at("after"), 1);
  EXPECT_EQ(log->Stats().appends, 2);
}

// Without an executor (or without a sync to wait for), AppendAsync is an
// Append: the callback has run when it returns.
TEST_F(DiskLogTest, AsyncAppendRunsInlineWithoutAnExecutorOrASyncToWaitFor) {
  for (const bool with_executor : {false, true}) {
    for (const FsyncPolicy policy : {FsyncPolicy::kAlways, FsyncPolicy::kNever}) {
      if (with_executor && policy == FsyncPolicy::kAlways) continue;  // truly async
      SCOPED_TRACE(absl::StrCat("executor ", with_executor, " policy ", static_cast<int>(policy)));
      TaskPool flusher;
      DiskLogOptions o = Options();
      o.dir = absl::StrCat(dir_, "-", with_executor, static_cast<int>(policy));
      o.fsync = policy;
      if (with_executor) o.executor = flusher.AsExecutor();
      ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
      Completions completions;
      log->AppendAsync({MakeRecord(0), MakeRecord(1)}, Log::AsyncStart::kExecutor,
                       completions.Expect("a"));
      log->AppendAsync({MakeRecord(2)}, Log::AsyncStart::kExecutor, completions.Expect("b"));
      std::vector<std::pair<std::string, absl::StatusOr<int64_t>>> results = completions.results();
      ASSERT_THAT(results, SizeIs(2));
      EXPECT_THAT(results[0].second, IsOkAndHolds(0));
      EXPECT_THAT(results[1].second, IsOkAndHolds(2));
    }
  }
}

// kHere: an idle log's group commit runs on the caller, with no hand-off;
// kExecutor: never on the caller.
TEST_F(DiskLogTest, AsyncStartSaysWhereAnIdleLogsGroupCommitRuns) {
  DiskLogOptions o = Options();
  o.fsync = FsyncPolicy::kAlways;
  TaskPool flusher;
  std::atomic<int> posted{0};
  std::function<void(absl::AnyInvocable<void()>)> executor = flusher.AsExecutor();
  o.executor = [&](absl::AnyInvocable<void()> task) {
    ++posted;
    executor(std::move(task));
  };
  ONCE_ASSERT_OK_AND_ASSIGN(auto log, DiskLog::Open(o));
  Completions completions;
  log->AppendAsync({MakeRecord(0)}, Log::AsyncStart::kHere, completions.Expect("here"));
  ASSERT_THAT(completions.results(), SizeIs(1));  // done before the return
  EXPECT_EQ(posted.load(), 0);
  log->AppendAsync({MakeRecord(1)}, Log::AsyncStart::kExecutor, completions.Expect("there"));
  ASSERT_TRUE(completions.WaitFor(2));
  EXPECT_EQ(posted.load(), 1);
  EXPECT_THAT(completions.results()[1].second, IsOkAndHolds(1));
}

TEST(MemoryLogAsyncTest, AppendAsyncAnswersInline) {
  MemoryBudget budget(1 << 20);
  std::unique_ptr<Log> log = NewMemoryLog(&budget);
  Completions completions;
  log->AppendAsync({MakeRecord(0)}, Log::AsyncStart::kExecutor, completions.Expect("one"));
  log->AppendAsync({}, Log::AsyncStart::kExecutor, completions.Expect("empty"));
  std::vector<std::pair<std::string, absl::StatusOr<int64_t>>> results = completions.results();
  ASSERT_THAT(results, SizeIs(2));
  EXPECT_THAT(results[0].second, IsOk());
  EXPECT_THAT(results[1].second, StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace once::broker
