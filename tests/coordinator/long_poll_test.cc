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
#include "tests/coordinator/memory_group_fixture.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

// LongPolls on the fixture's group. The poll's own deadlines are real
// timers.
class LongPollTest : public MemoryGroupFixture {
 protected:
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

  LongPollSet set_;
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
