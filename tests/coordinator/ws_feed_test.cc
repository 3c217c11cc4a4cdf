#include "coordinator/ws_feed.h"

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/thread_pool.hpp"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/network_thread_work.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/memory_group_fixture.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A WsFeed on the fixture's group, with the io_context's thread as the
// session's strand.
class WsFeedTest : public MemoryGroupFixture {
 protected:
  void SetUp() override {
    MemoryGroupFixture::SetUp();
    if (HasFatalFailure()) return;
    feed_ = MakeFeed(group_, "c");
  }

  // A feed of `consumer` on `group` whose deliveries Next() returns.
  std::shared_ptr<WsFeed> MakeFeed(std::shared_ptr<broker::ConsumerGroup> group,
                                   std::string consumer) {
    const net::strand<net::io_context::executor_type> strand = net::make_strand(ioc_);
    return std::make_shared<WsFeed>(workers_.get_executor(), strand, &clock_, std::move(group),
                                    std::move(consumer), [this, strand](WsFeed::Result r) {
                                      std::lock_guard lock(mu_);
                                      results_.push_back(std::move(r));
                                      on_strand_.push_back(strand.running_in_this_thread());
                                      cv_.notify_all();
                                    });
  }

  void TearDown() override {
    if (feed_ != nullptr) StopFeed();
    feed_.reset();
    MemoryGroupFixture::TearDown();
  }

  // Stop must run on the feed's strand (its timer's): the io_context has
  // one thread, so anything posted to it is serialized with the strand.
  void StopFeed() {
    std::promise<void> stopped;
    net::post(ioc_, [&] {
      feed_->Stop();
      stopped.set_value();
    });
    ASSERT_EQ(stopped.get_future().wait_for(seconds(10)), std::future_status::ready);
  }

  // The next delivery, or nullopt if none came within `wait`.
  std::optional<WsFeed::Result> Next(milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [this] { return !results_.empty(); })) return std::nullopt;
    WsFeed::Result r = std::move(results_.front());
    results_.pop_front();
    last_on_strand_ = on_strand_.front();
    on_strand_.pop_front();
    return r;
  }

  // Asks for `credits` and expects the next delivery to hold exactly
  // `values`, delivered on the feed's strand or not (`on_strand`).
  void RequestAndExpect(int credits, const std::vector<std::string>& values, bool on_strand) {
    feed_->Request(credits);
    std::optional<WsFeed::Result> r = Next(seconds(10));
    ASSERT_TRUE(r.has_value() && r->ok());
    ASSERT_EQ((*r)->size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ((**r)[i].record.value, values[i]);
    EXPECT_EQ(last_on_strand_, on_strand);
  }

  // Replaces the feed by one of consumer "c" (joined, for an ordered
  // group) on a new group of `mode` on the disk topic "d"; nullptr if the
  // group could not be made.
  std::shared_ptr<broker::ConsumerGroup> FeedOnDiskGroup(broker::GroupMode mode) {
    StopFeed();
    const bool ordered = mode == broker::GroupMode::kOrdered;
    std::shared_ptr<broker::ConsumerGroup> disk = MakeDiskGroup("d", ordered ? "do" : "ds", mode);
    if (disk == nullptr || (ordered && !disk->Join("c").ok())) return nullptr;
    feed_ = MakeFeed(disk, "c");
    return disk;
  }

  std::shared_ptr<WsFeed> feed_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WsFeed::Result> results_;
  std::deque<bool> on_strand_;   // whether each delivery ran on the feed's strand
  bool last_on_strand_ = false;  // ... the one Next() returned last
};

TEST_F(WsFeedTest, DeliversWhatIsThereAtOnce) {
  Publish("a");
  Publish("b");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value());
  ONCE_ASSERT_OK(r->status());
  ASSERT_EQ((*r)->size(), 2u);
  EXPECT_EQ((**r)[0].record.value, "a");
  EXPECT_EQ((**r)[1].record.value, "b");
}

TEST_F(WsFeedTest, WaitsForAPublishThenDeliversIt) {
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(200)).has_value());  // nothing yet: no empty answer
  Publish("late");
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value());
  ONCE_ASSERT_OK(r->status());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_EQ((**r)[0].record.value, "late");
}

// A memory group's fetches never wait for a disk: they run on the
// session's strand, and the feed waits and wakes there as a worker-fed one
// does.
TEST_F(WsFeedTest, AMemoryGroupIsFetchedAndDeliveredOnTheStrand) {
  Publish("a");
  ASSERT_NO_FATAL_FAILURE(RequestAndExpect(10, {"a"}, /*on_strand=*/true));
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  Publish("b");
  // Credit is still out: the publish wakes the feed.
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_EQ((**r)[0].record.value, "b");
  EXPECT_TRUE(last_on_strand_);
}

// A disk topic's shared group: on the strand once the subscription has
// caught up (the first fetch may find a backlog: a worker's), and while
// no lease is about to expire; with one within the margin (a fetch could
// then commit a redelivery count), on a worker.
TEST_F(WsFeedTest, ADiskSharedGroupIsFetchedOnTheStrandWhenCaughtUpAndNoDeadlineIsNear) {
  std::shared_ptr<broker::ConsumerGroup> disk = FeedOnDiskGroup(broker::GroupMode::kShared);
  ASSERT_NE(disk, nullptr);
  // Each Request asks for more than there is: afterwards, caught up.
  const std::vector<std::pair<std::string, bool>> steps = {
      {"first", false}, {"second", true}, {"third", false}};
  for (const auto& [value, on_strand] : steps) {
    SCOPED_TRACE(value);
    if (value == "third") {
      // The leases taken expire in ack_timeout_ms: get within the margin.
      clock_.Advance(disk->config().ack_timeout_ms - kQuietFetchMarginMs / 2);
    }
    PublishTo("d", value);
    ASSERT_NO_FATAL_FAILURE(RequestAndExpect(10, {value}, on_strand));
  }
}

// A subscription whose last fetch came back full is behind: its next
// (large) read goes to a worker.
TEST_F(WsFeedTest, ADiskSharedGroupThatIsBehindIsFetchedOnAWorker) {
  ASSERT_NE(FeedOnDiskGroup(broker::GroupMode::kShared), nullptr);
  PublishTo("d", "a");
  feed_->Request(10);
  ASSERT_TRUE(Next(seconds(10)).has_value());  // caught up now
  PublishTo("d", "b");
  PublishTo("d", "c");
  PublishTo("d", "d");
  ASSERT_NO_FATAL_FAILURE(RequestAndExpect(2, {"b", "c"}, /*on_strand=*/true));
  // The last came back full: behind.
  ASSERT_NO_FATAL_FAILURE(RequestAndExpect(2, {"d"}, /*on_strand=*/false));
}

// An ordered group's redeliveries have no deadline to tell them by: its
// disk fetches always go to a worker.
TEST_F(WsFeedTest, ADiskOrderedGroupIsFetchedOnAWorker) {
  ASSERT_NE(FeedOnDiskGroup(broker::GroupMode::kOrdered), nullptr);
  PublishTo("d", "first");
  ASSERT_NO_FATAL_FAILURE(RequestAndExpect(1, {"first"}, /*on_strand=*/false));
}

TEST_F(WsFeedTest, TakesAtMostMaxPerRequest) {
  Publish("1");
  Publish("2");
  Publish("3");
  feed_->Request(1);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_EQ((*r)->size(), 1u);
  // No second delivery without a second request.
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  feed_->Request(5);
  r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_EQ((*r)->size(), 2u);
}

// A delivery that took everything there was: the next Request waits (no
// fetch in vain) and the next publish still wakes it.
TEST_F(WsFeedTest, AfterTakingEverythingTheNextRequestWaitsForAPublish) {
  Publish("a");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_EQ((*r)->size(), 1u);
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  Publish("b");
  r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_EQ((**r)[0].record.value, "b");
}

// A consumer at the group's prefetch limit waits for its own ack to make
// room, and gets the rest then.
TEST_F(WsFeedTest, AFeedAtThePrefetchLimitIsWokenByTheAckThatMakesRoom) {
  StopFeed();
  broker::GroupConfig config;
  config.prefetch = 1;
  ONCE_ASSERT_OK(registry_->CreateGroup("t", "narrow", config).status());
  ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<broker::ConsumerGroup> narrow,
                            registry_->GetGroup("t", "narrow"));
  feed_ = MakeFeed(narrow, "c");
  Publish("1");
  Publish("2");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  const std::string token = (**r)[0].token;
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  ONCE_ASSERT_OK(narrow->Ack({token}).status());
  r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_EQ((**r)[0].record.value, "2");
}

TEST_F(WsFeedTest, StoppedFeedFetchesNothingMore) {
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  StopFeed();
  Publish("x");
  EXPECT_FALSE(Next(milliseconds(200)).has_value());
  feed_->Request(10);  // ignored once stopped
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  // The message is still there for another consumer.
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<broker::Delivery> d, group_->Fetch("other", 10));
  EXPECT_EQ(d.size(), 1u);
}

TEST_F(WsFeedTest, FetchErrorsAreDelivered) {
  StopFeed();
  feed_ = MakeFeed(group_, "not a valid consumer id \n");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->ok());
}

}  // namespace
}  // namespace once::coordinator
