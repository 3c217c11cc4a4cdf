#include "coordinator/long_poll.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
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
// and a worker pool: what a LongPoll runs on in the service. Time in the
// group is a FakeClock (so no lease expires on its own); the poll's own
// deadlines are real timers.
class LongPollTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/long_poll_XXXXXX";
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
  }

  void TearDown() override {
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

  // Starts a poll; its result arrives in the returned future.
  std::pair<std::shared_ptr<LongPoll>, std::future<LongPoll::Result>> Start(milliseconds wait,
                                                                            int max = 10) {
    auto promise = std::make_shared<std::promise<LongPoll::Result>>();
    std::future<LongPoll::Result> future = promise->get_future();
    auto poll = std::make_shared<LongPoll>(
        ioc_, workers_, &set_, &clock_, group_, "c", max, wait,
        [promise](LongPoll::Result r) { promise->set_value(std::move(r)); });
    poll->Start();
    return {poll, std::move(future)};
  }

  std::string dir_;
  testing::FakeClock clock_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> registry_;
  std::shared_ptr<broker::ConsumerGroup> group_;
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  net::thread_pool workers_{2};
  LongPollSet set_;
  std::thread io_thread_;
};

TEST_F(LongPollTest, AnswersAtOnceWhenMessagesAreThere) {
  Publish("a");
  auto [poll, result] = Start(seconds(60));
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  LongPoll::Result r = result.get();
  ONCE_ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].record.value, "a");
  EXPECT_EQ(set_.size(), 0u);
}

TEST_F(LongPollTest, EmptyAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  auto [poll, result] = Start(milliseconds(100));
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  LongPoll::Result r = result.get();
  ONCE_ASSERT_OK(r);
  EXPECT_TRUE(r->empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
}

TEST_F(LongPollTest, APublishEndsTheWait) {
  auto [poll, result] = Start(seconds(60));
  // Whether the publish lands before the first fetch or while the poll
  // waits, the poll must answer with it, long before its deadline.
  Publish("late");
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  LongPoll::Result r = result.get();
  ONCE_ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].record.value, "late");
}

TEST_F(LongPollTest, ANackedMessageEndsAnotherConsumersWait) {
  Publish("x");
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<broker::Delivery> taken, group_->Fetch("other", 1));
  ASSERT_EQ(taken.size(), 1u);
  auto [poll, result] = Start(seconds(60));
  EXPECT_EQ(result.wait_for(milliseconds(50)), std::future_status::timeout);
  broker::GroupConfig config = group_->config();
  // Backoff applies to redelivery; move the fake clock past it.
  ONCE_ASSERT_OK(group_->Nack({taken[0].token}, broker::NackAction::kRequeue).status());
  clock_.Advance(config.backoff_max_ms + 1);
  group_->notifier().Notify();
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  LongPoll::Result r = result.get();
  ONCE_ASSERT_OK(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].delivery_count, 2);
}

TEST_F(LongPollTest, WakeEndsTheWaitAtOnce) {
  auto [poll, result] = Start(seconds(60));
  EXPECT_EQ(result.wait_for(milliseconds(50)), std::future_status::timeout);
  poll->Wake();
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  LongPoll::Result r = result.get();
  ONCE_ASSERT_OK(r);
  EXPECT_TRUE(r->empty());
}

TEST_F(LongPollTest, DrainEndsWaitsAndLaterPollsDoNotWait) {
  auto [first, first_result] = Start(seconds(60));
  EXPECT_EQ(first_result.wait_for(milliseconds(50)), std::future_status::timeout);
  set_.BeginDrain();
  ASSERT_EQ(first_result.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_TRUE(set_.draining());
  auto [second, second_result] = Start(seconds(60));
  ASSERT_EQ(second_result.wait_for(seconds(10)), std::future_status::ready);
  ONCE_EXPECT_OK(second_result.get());
}

TEST_F(LongPollTest, ADeletedGroupIsAnError) {
  auto [poll, result] = Start(seconds(60));
  EXPECT_EQ(result.wait_for(milliseconds(50)), std::future_status::timeout);
  ONCE_ASSERT_OK(registry_->DeleteGroup("t", "g"));
  ASSERT_EQ(result.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_THAT(result.get(), testing::StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace once::coordinator
