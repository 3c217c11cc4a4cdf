// Shared fixture of the consumer-group tests: a temp data directory, a
// FakeClock, a real Broker and a GroupRegistry over them.
#ifndef ONCE_TESTS_BROKER_GROUP_TESTING_H_
#define ONCE_TESTS_BROKER_GROUP_TESTING_H_

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "broker/consumer_group.h"
#include "broker/group_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::broker::testing {

// A StatusOr that is OK and holds a value equal to `expected`.
MATCHER_P(IsOkAndHolds, expected, "is OK and holds " + ::testing::PrintToString(expected)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return *arg == expected;
}

class GroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_groups_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    OpenAll();
  }

  void TearDown() override {
    registry_.reset();
    broker_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // (Re)opens the broker and the registry over dir_, as a restart does.
  void OpenAll() {
    registry_.reset();
    broker_.reset();
    BrokerOptions options;
    options.data_dir = dir_;
    options.clock = &clock_;
    auto broker = Broker::Open(options);
    ASSERT_THAT(broker, ::once::testing::IsOk());
    broker_ = *std::move(broker);
    GroupRegistryOptions ro;
    ro.clock = &clock_;
    auto registry = GroupRegistry::Open(broker_.get(), ro);
    ASSERT_THAT(registry, ::once::testing::IsOk());
    registry_ = *std::move(registry);
  }

  void MakeTopic(const std::string& name, int partitions, Backend backend) {
    TopicConfig c;
    c.partitions = partitions;
    c.backend = backend;
    ASSERT_THAT(broker_->CreateTopic(name, c), ::once::testing::IsOk());
  }

  // Publishes n messages "<prefix><i>"; with `keyed`, message i has key
  // "k<i>" (spreading over partitions), else round-robin.
  void Publish(const std::string& topic, int n, const std::string& prefix = "m") {
    auto t = broker_->GetTopic(topic);
    ASSERT_THAT(t, ::once::testing::IsOk());
    std::vector<Record> records;
    for (int i = 0; i < n; ++i) {
      Record r;
      r.value = absl::StrCat(prefix, i);
      records.push_back(std::move(r));
    }
    ASSERT_THAT((*t)->Publish(std::move(records)), ::once::testing::IsOk());
  }

  std::shared_ptr<ConsumerGroup> MakeGroup(const std::string& topic, const std::string& name,
                                           const GroupConfig& config) {
    auto created = registry_->CreateGroup(topic, name, config);
    EXPECT_THAT(created, ::once::testing::IsOk());
    auto g = registry_->GetGroup(topic, name);
    EXPECT_THAT(g, ::once::testing::IsOk());
    return g.ok() ? *g : nullptr;
  }

  static std::vector<std::string> Tokens(const std::vector<Delivery>& ds) {
    std::vector<std::string> out;
    for (const Delivery& d : ds) out.push_back(d.token);
    return out;
  }

  static std::string HeaderOf(const Record& r, const std::string& key) {
    for (const Header& h : r.headers) {
      if (h.key == key) return h.value;
    }
    return "<missing>";
  }

  std::string dir_;
  ::once::testing::FakeClock clock_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<GroupRegistry> registry_;
};

}  // namespace once::broker::testing

#endif  // ONCE_TESTS_BROKER_GROUP_TESTING_H_
