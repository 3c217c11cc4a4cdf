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
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A real broker and group on a memory topic, an io_context on a thread
// (the session's strand) and a worker pool: what a WsFeed runs on in the
// service. Group time is a FakeClock, so no lease expires on its own.
class WsFeedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/ws_feed_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    broker::BrokerOptions options;
    options.data_dir = dir_;
    options.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(broker_, broker::Broker::Open(options));
    broker::GroupRegistryOptions ro;
    ro.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(registry_, broker::GroupRegistry::Open(broker_.get(), ro));
    broker::TopicConfig topic;
    topic.backend = broker::Backend::kMemory;
    ONCE_ASSERT_OK(broker_->CreateTopic("t", topic).status());
    ONCE_ASSERT_OK(registry_->CreateGroup("t", "g", broker::GroupConfig()).status());
    ONCE_ASSERT_OK_AND_ASSIGN(group_, registry_->GetGroup("t", "g"));
    io_thread_ = std::thread([this] { ioc_.run(); });
    feed_ = std::make_shared<WsFeed>(workers_, net::make_strand(ioc_), &clock_, group_, "c",
                                     [this](WsFeed::Result r) {
                                       std::lock_guard lock(mu_);
                                       results_.push_back(std::move(r));
                                       cv_.notify_all();
                                     });
  }

  void TearDown() override {
    StopFeed();
    feed_.reset();
    work_.reset();
    io_thread_.join();
    workers_.join();
    group_.reset();
    registry_.reset();
    broker_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Publish(const std::string& value) {
    ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<broker::Topic> topic, broker_->GetTopic("t"));
    broker::Record r;
    r.value = value;
    ONCE_ASSERT_OK(topic->Publish({r}).status());
    registry_->NotifyPublished("t");
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
    return r;
  }

  std::string dir_;
  testing::FakeClock clock_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> registry_;
  std::shared_ptr<broker::ConsumerGroup> group_;
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  net::thread_pool workers_{2};
  std::thread io_thread_;
  std::shared_ptr<WsFeed> feed_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WsFeed::Result> results_;
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
  feed_ = std::make_shared<WsFeed>(workers_, net::make_strand(ioc_), &clock_, group_,
                                   "not a valid consumer id \n", [this](WsFeed::Result r) {
                                     std::lock_guard lock(mu_);
                                     results_.push_back(std::move(r));
                                     cv_.notify_all();
                                   });
  feed_->Request(10);
  std::optional<WsFeed::Result> r = Next(seconds(10));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->ok());
}

}  // namespace
}  // namespace once::coordinator
