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

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/thread_pool.hpp"
#include "broker/broker.h"
#include "broker/group_registry.h"
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

  // A feed of `consumer` on `group` whose deliveries Next() returns; its
  // fetches run on the workers or, with `fetch_on_strand`, on its strand.
  std::shared_ptr<WsFeed> MakeFeed(std::shared_ptr<broker::ConsumerGroup> group,
                                   std::string consumer, bool fetch_on_strand = false) {
    const net::strand<net::io_context::executor_type> strand = net::make_strand(ioc_);
    const net::any_io_executor fetches = fetch_on_strand
                                             ? net::any_io_executor(strand)
                                             : net::any_io_executor(workers_.get_executor());
    return std::make_shared<WsFeed>(fetches, strand, &clock_, std::move(group), std::move(consumer),
                                    [this, strand](WsFeed::Result r) {
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

TEST_F(WsFeedTest, DeliversOnTheWorkersByDefault) {
  Publish("a");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_FALSE(last_on_strand_);
}

// A memory group's feed, in the service: fetched on the session's strand,
// it waits and wakes as a worker-fed one does, and delivers on the strand.
TEST_F(WsFeedTest, AFeedFetchingOnItsStrandWaitsAndDeliversThere) {
  StopFeed();
  feed_ = MakeFeed(group_, "c", /*fetch_on_strand=*/true);
  Publish("a");
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_TRUE(last_on_strand_);
  feed_->Request(10);
  EXPECT_FALSE(Next(milliseconds(100)).has_value());
  Publish("b");
  r = Next(seconds(10));
  ASSERT_TRUE(r.has_value() && r->ok());
  ASSERT_EQ((*r)->size(), 1u);
  EXPECT_EQ((**r)[0].record.value, "b");
  EXPECT_TRUE(last_on_strand_);
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
