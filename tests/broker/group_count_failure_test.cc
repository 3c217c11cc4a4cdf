// When the durable write of a redelivery's count fails, the redelivery is
// not handed out (nor counted), first deliveries still go out, and the
// message comes back with the right count once the store works again.
//
// The groups are made directly over their own GroupStore with a short
// busy timeout; a second SQLite connection holding the write lock makes
// the store's writes fail (kUnavailable after the timeout, no sleeps).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/group_ordered.h"
#include "broker/group_shared.h"
#include "broker/group_store.h"
#include "broker/group_token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/sqlite.h"
#include "tests/broker/group_testing.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kAckTimeoutMs = 1000;

class GroupCountFailureTest : public testing::GroupTest,
                              public ::testing::WithParamInterface<GroupMode> {
 protected:
  void SetUp() override {
    GroupTest::SetUp();
    db_path_ = dir_ + "/own_groups.db";
    sqlite::DatabaseOptions o;
    o.busy_timeout_ms = 20;
    ONCE_ASSERT_OK_AND_ASSIGN(store_, GroupStore::Open(db_path_, o));
    ONCE_ASSERT_OK_AND_ASSIGN(DeliveryTokenCodec codec,
                              DeliveryTokenCodec::Create(store_->token_secret()));
    codec_.emplace(std::move(codec));
  }

  void TearDown() override {
    group_.reset();
    locker_.reset();
    store_.reset();
    GroupTest::TearDown();
  }

  // A group of the test's mode on the one-partition disk topic "t".
  void MakeOwnGroup() {
    GroupConfig c;
    c.mode = GetParam();
    c.ack_timeout_ms = kAckTimeoutMs;
    c.backoff_base_ms = 0;
    StoredGroup sg;
    sg.topic = "t";
    sg.name = "g";
    sg.config = c;
    sg.created_ms = clock_.NowMs();
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t id, store_->CreateGroup(sg, {0}));
    ONCE_ASSERT_OK_AND_ASSIGN(std::shared_ptr<Topic> topic, broker_->GetTopic("t"));
    GroupContext ctx;
    ctx.name = "g";
    ctx.topic = topic;
    ctx.config = c;
    ctx.incarnation = static_cast<uint64_t>(id);
    ctx.boot_epoch = store_->boot_epoch();
    ctx.created_ms = sg.created_ms;
    ctx.codec = &*codec_;
    ctx.store = store_.get();
    ctx.broker = broker_.get();
    ctx.clock = &clock_;
    if (GetParam() == GroupMode::kShared) {
      ONCE_ASSERT_OK_AND_ASSIGN(group_, SharedGroup::Create(std::move(ctx), {}, {0}));
    } else {
      ONCE_ASSERT_OK_AND_ASSIGN(group_, OrderedGroup::Create(std::move(ctx), {}, {0}));
    }
  }

  // Another connection takes the database's write lock (or gives it up).
  void LockStore() {
    ONCE_ASSERT_OK_AND_ASSIGN(locker_, sqlite::Database::Open(db_path_));
    ONCE_ASSERT_OK(locker_->Exec("BEGIN IMMEDIATE"));
  }
  void UnlockStore() {
    ONCE_ASSERT_OK(locker_->Exec("ROLLBACK"));
    locker_.reset();
  }

  std::string db_path_;
  std::unique_ptr<GroupStore> store_;
  std::optional<DeliveryTokenCodec> codec_;
  std::unique_ptr<ConsumerGroup> group_;
  std::unique_ptr<sqlite::Database> locker_;
};

TEST_P(GroupCountFailureTest, FailedCountWriteHandsOutNoRedelivery) {
  MakeTopic("t", 1, Backend::kDisk);
  Publish("t", 2);
  MakeOwnGroup();
  ASSERT_NE(group_, nullptr);
  ONCE_ASSERT_OK_AND_ASSIGN(auto first, group_->Fetch("c", 1));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].record.offset, 0);
  clock_.Advance(kAckTimeoutMs + 1);  // offset 0 is due for its 2nd delivery

  LockStore();
  auto during = group_->Fetch("c", 10);
  if (GetParam() == GroupMode::kShared) {
    // Offset 1 is a first delivery: it costs no write and goes out.
    ONCE_ASSERT_OK(during.status());
    ASSERT_EQ(during->size(), 1u);
    EXPECT_EQ((*during)[0].record.offset, 1);
    EXPECT_EQ((*during)[0].delivery_count, 1);
  } else {
    // Offset 1 follows offset 0 in the partition: neither goes out.
    EXPECT_THAT(during, Not(IsOk()));
    EXPECT_THAT(during.status().message(), HasSubstr("recording redelivery counts"));
  }
  UnlockStore();

  // The failed attempt did not count: offset 0 comes with count 2.
  ONCE_ASSERT_OK_AND_ASSIGN(auto after, group_->Fetch("c", 10));
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after[0].record.offset, 0);
  EXPECT_EQ(after[0].delivery_count, 2);
  if (GetParam() == GroupMode::kOrdered) {
    ASSERT_EQ(after.size(), 2u);
    EXPECT_EQ(after[1].record.offset, 1);
    EXPECT_EQ(after[1].delivery_count, 1);
  } else {
    EXPECT_EQ(after.size(), 1u);  // offset 1 is leased already
  }
  // And it is durable now.
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredGroup> groups, store_->LoadGroups());
  ASSERT_EQ(groups.size(), 1u);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredPartition> parts,
                            store_->LoadPartitions(groups[0].group_id));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_THAT(parts[0].counts, ::testing::Contains(std::pair<int64_t, int32_t>(0, 2)));
}

INSTANTIATE_TEST_SUITE_P(Modes, GroupCountFailureTest,
                         ::testing::Values(GroupMode::kShared, GroupMode::kOrdered),
                         [](const ::testing::TestParamInfo<GroupMode>& info) {
                           return std::string(GroupModeName(info.param));
                         });

}  // namespace
}  // namespace once::broker
