#include "coordinator/network_thread_work.h"

#include <memory>

#include "broker/topic.h"
#include "gtest/gtest.h"
#include "tests/coordinator/memory_group_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using NetworkThreadWorkTest = MemoryGroupFixture;

TEST_F(NetworkThreadWorkTest, OnlyMemoryTopicsArePublishedOnTheNetworkThread) {
  ASSERT_NE(MakeDiskGroup("d", "ds", broker::GroupMode::kShared), nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<broker::Topic> memory, broker_->GetTopic("t"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<broker::Topic> disk, broker_->GetTopic("d"));
  EXPECT_TRUE(PublishRunsOnNetworkThread(*memory));
  EXPECT_FALSE(PublishRunsOnNetworkThread(*disk));
}

TEST_F(NetworkThreadWorkTest, AMemoryGroupRunsThereWhateverItsDeadlines) {
  ONCE_ASSERT_OK(group_->Join("c"));
  Publish("a");
  ONCE_ASSERT_OK(group_->Fetch("c", 1).status());
  clock_.Advance(group_->config().ack_timeout_ms + 1);  // its lease is overdue
  EXPECT_TRUE(GroupRunsOnNetworkThread(*group_));
  EXPECT_TRUE(FetchRunsOnNetworkThread(*group_, clock_.NowMs()));
}

TEST_F(NetworkThreadWorkTest, ADiskSharedGroupIsFetchedThereOnlyFarFromItsDeadlines) {
  std::shared_ptr<broker::ConsumerGroup> g = MakeDiskGroup("d", "ds", broker::GroupMode::kShared);
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(GroupRunsOnNetworkThread(*g));  // its acks commit to SQLite
  EXPECT_TRUE(FetchMayRunOnNetworkThread(*g));
  EXPECT_TRUE(FetchRunsOnNetworkThread(*g, clock_.NowMs()));  // no deadline at all
  PublishTo("d", "a");
  ONCE_ASSERT_OK(g->Fetch("c", 1).status());
  const int64_t expiry = clock_.NowMs() + g->config().ack_timeout_ms;
  EXPECT_TRUE(FetchRunsOnNetworkThread(*g, clock_.NowMs()));
  EXPECT_TRUE(FetchRunsOnNetworkThread(*g, expiry - kQuietFetchMarginMs - 1));
  EXPECT_FALSE(FetchRunsOnNetworkThread(*g, expiry - kQuietFetchMarginMs));
  EXPECT_FALSE(FetchRunsOnNetworkThread(*g, expiry + 1));
}

TEST_F(NetworkThreadWorkTest, ADiskOrderedGroupIsNeverFetchedThere) {
  std::shared_ptr<broker::ConsumerGroup> g = MakeDiskGroup("d", "do", broker::GroupMode::kOrdered);
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(FetchMayRunOnNetworkThread(*g));
  EXPECT_FALSE(FetchRunsOnNetworkThread(*g, clock_.NowMs()));
}

}  // namespace
}  // namespace once::coordinator
