#include "broker/task_pool.h"

#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::broker {
namespace {

TEST(TaskPoolTest, OneThreadRunsTasksInOrderAndThoseTheyPostBeforeItIsDestroyed) {
  absl::Mutex mu;
  std::vector<int> ran;
  {
    TaskPool pool;
    for (int i = 0; i < 3; ++i) {
      pool.Post([&, i] {
        absl::MutexLock lock(&mu);
        ran.push_back(i);
      });
    }
    pool.Post([&] {
      pool.Post([&] {
        absl::MutexLock lock(&mu);
        ran.push_back(99);  // posted by a task, during the destruction maybe
      });
    });
  }
  absl::MutexLock lock(&mu);
  EXPECT_THAT(ran, ::testing::ElementsAre(0, 1, 2, 99));
}

TEST(TaskPoolTest, ThreadsRunTasksSideBySide) {
  absl::Mutex mu;
  int started = 0;
  bool both_seen = true;
  {
    TaskPool pool(2);
    for (int i = 0; i < 2; ++i) {
      pool.Post([&] {
        absl::MutexLock lock(&mu);
        ++started;
        // Each task waits (boundedly) for the other: only two threads can
        // have both running.
        const auto both = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return started == 2; };
        if (!mu.AwaitWithTimeout(absl::Condition(&both), absl::Seconds(10))) both_seen = false;
      });
    }
  }
  absl::MutexLock lock(&mu);
  EXPECT_EQ(started, 2);
  EXPECT_TRUE(both_seen);
}

TEST(TaskPoolTest, AsExecutorPostsToThePool) {
  absl::Mutex mu;
  int ran = 0;
  {
    TaskPool pool;
    std::function<void(absl::AnyInvocable<void()>)> executor = pool.AsExecutor();
    executor([&] {
      absl::MutexLock lock(&mu);
      ++ran;
    });
  }
  absl::MutexLock lock(&mu);
  EXPECT_EQ(ran, 1);
}

}  // namespace
}  // namespace once::broker
