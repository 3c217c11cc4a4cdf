// A test fixture with what the service's delivery paths (LongPoll, WsFeed)
// run on: a real broker and group "g" on a memory topic "t" in a temp
// dir (and disk topics' groups on demand), an io_context on its own thread
// and a worker pool. Group time is a FakeClock, so no lease expires on its
// own.
#ifndef ONCE_TESTS_COORDINATOR_MEMORY_GROUP_FIXTURE_H_
#define ONCE_TESTS_COORDINATOR_MEMORY_GROUP_FIXTURE_H_

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/thread_pool.hpp"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {

class MemoryGroupFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/memory_group_XXXXXX";
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
    if (io_thread_.joinable()) io_thread_.join();
    workers_.join();
    group_.reset();
    registry_.reset();
    broker_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Publishes one message to "t" and wakes the group's waiters.
  void Publish(const std::string& value) { PublishTo("t", value); }
  void PublishTo(const std::string& topic_name, const std::string& value) {
    ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<broker::Topic> topic, broker_->GetTopic(topic_name));
    broker::Record r;
    r.value = value;
    ONCE_ASSERT_OK(topic->Publish({r}).status());
    registry_->NotifyPublished(topic_name);
  }

  // A group `group` of mode `mode` on a new disk topic `topic`; its state
  // is in the group store (groups.db in the temp dir).
  std::shared_ptr<broker::ConsumerGroup> MakeDiskGroup(const std::string& topic,
                                                       const std::string& group,
                                                       broker::GroupMode mode) {
    broker::TopicConfig config;
    config.backend = broker::Backend::kDisk;
    config.fsync = broker::FsyncPolicy::kNever;
    EXPECT_TRUE(broker_->CreateTopic(topic, config).ok());
    broker::GroupConfig g;
    g.mode = mode;
    EXPECT_TRUE(registry_->CreateGroup(topic, group, g).ok());
    absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> made = registry_->GetGroup(topic, group);
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? *made : nullptr;
  }

  std::string dir_;
  testing::FakeClock clock_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> registry_;
  std::shared_ptr<broker::ConsumerGroup> group_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  boost::asio::thread_pool workers_{2};
  std::thread io_thread_;
};

}  // namespace once::coordinator

#endif  // ONCE_TESTS_COORDINATOR_MEMORY_GROUP_FIXTURE_H_
