// How the 2PC engine batches: a group's own txn_batch_max and
// txn_linger_ms over the service's defaults, lingering partial batches
// (topped up by new messages, sent when full or due) and their release
// when the participant goes. A real broker (disk topic) and group
// registry, a FakeClock, delivery loops run inline: every frame is there
// when the call that caused it returns (votes are never sent here, so no
// store callback is involved).
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/participant_channel.h"
#include "coordinator/txn_coordinator.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::IsOk;
using ::testing::ElementsAre;

// Records the PREPAREs it is sent.
class RecordingChannel : public ParticipantChannel {
 public:
  void Send(protocol::Frame frame) override {
    absl::MutexLock lock(&mu_);
    if (auto* p = std::get_if<protocol::Prepare>(&frame)) prepares_.push_back(*p);
    ++frames_;
  }
  void Close(absl::string_view code, absl::string_view) override {
    absl::MutexLock lock(&mu_);
    closed_ = std::string(code);
  }
  // The sizes of the PREPAREs so far, in order.
  std::vector<size_t> Sizes() {
    absl::MutexLock lock(&mu_);
    std::vector<size_t> sizes;
    for (const protocol::Prepare& p : prepares_) sizes.push_back(p.messages.size());
    return sizes;
  }
  std::vector<protocol::Prepare> Prepares() {
    absl::MutexLock lock(&mu_);
    return prepares_;
  }
  std::string closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<protocol::Prepare> prepares_ ABSL_GUARDED_BY(mu_);
  int frames_ ABSL_GUARDED_BY(mu_) = 0;
  std::string closed_ ABSL_GUARDED_BY(mu_);
};

class TxnBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_txn_batching_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    broker::BrokerOptions bo;
    bo.data_dir = dir_ + "/data";
    bo.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(broker_, broker::Broker::Open(bo));
    broker::GroupRegistryOptions ro;
    ro.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(registry_, broker::GroupRegistry::Open(broker_.get(), ro));
    broker::TopicConfig tc;
    tc.partitions = 2;
    tc.backend = broker::Backend::kDisk;
    ASSERT_THAT(broker_->CreateTopic("t", tc), IsOk());
  }

  void TearDown() override {
    if (store_) store_->Close();
    engine_.reset();
    store_.reset();
    registry_.reset();
    broker_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Creates exactly-once group "g" with the given settings and an engine
  // whose defaults are `batch_max` and `linger_ms`.
  void Start(std::optional<int> group_batch, std::optional<int64_t> group_linger,
             int batch_max = 10, int64_t linger_ms = 0, int64_t ack_timeout_ms = 600'000) {
    broker::GroupConfig gc;
    gc.guarantee = broker::Guarantee::kExactlyOnce;
    gc.backoff_base_ms = 0;
    gc.ack_timeout_ms = ack_timeout_ms;
    gc.txn_batch_max = group_batch;
    gc.txn_linger_ms = group_linger;
    ASSERT_THAT(registry_->CreateGroup("t", "g", gc), IsOk());
    ONCE_ASSERT_OK_AND_ASSIGN(group_, registry_->GetGroup("t", "g"));
    TxnStoreOptions so;
    so.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(store_, TxnStore::Open(dir_ + "/coordinator.db", so));
    TxnCoordinatorOptions o;
    o.batch_max = batch_max;
    o.linger_ms = linger_ms;
    o.vote_timeout_ms = 600'000;
    o.clock = &clock_;
    ASSERT_THAT(ValidateTxnCoordinatorOptions(o), IsOk());
    broker::GroupRegistry* registry = registry_.get();
    engine_ = std::make_unique<TxnCoordinator>(
        store_.get(),
        [registry](absl::string_view topic, absl::string_view group) {
          return registry->GetGroup(topic, group);
        },
        [](std::function<void()> work) { work(); }, o);
    ASSERT_THAT(engine_->Recover(), IsOk());
  }

  void Publish(int n) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto topic, broker_->GetTopic("t"));
    std::vector<broker::Record> records;
    for (int i = 0; i < n; ++i) {
      broker::Record r;
      r.value = absl::StrCat("m", published_++);
      records.push_back(std::move(r));
    }
    ASSERT_THAT(topic->Publish(std::move(records)), IsOk());
    registry_->NotifyPublished("t");
  }

  std::shared_ptr<RecordingChannel> Hello(uint32_t window, const std::string& participant = "p1") {
    auto ch = std::make_shared<RecordingChannel>();
    protocol::Hello h;
    h.participant = participant;
    h.topic = "t";
    h.group = "g";
    h.window = window;
    engine_->OnHello(ch, h);
    EXPECT_EQ(ch->closed(), "");
    return ch;
  }

  int64_t Leased() { return group_->Describe().leased; }

  std::string dir_;
  once::testing::FakeClock clock_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> registry_;
  std::shared_ptr<broker::ConsumerGroup> group_;
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<TxnCoordinator> engine_;
  int published_ = 0;
};

TEST_F(TxnBatchingTest, GroupBatchMaxOverridesTheServiceDefault) {
  Start(/*group_batch=*/3, std::nullopt, /*batch_max=*/10);
  Publish(7);
  auto ch = Hello(/*window=*/5);
  EXPECT_THAT(ch->Sizes(), ElementsAre(3u, 3u, 1u));
}

TEST_F(TxnBatchingTest, UnsetGroupBatchMaxUsesTheServiceDefault) {
  Start(std::nullopt, std::nullopt, /*batch_max=*/4);
  Publish(9);
  auto ch = Hello(/*window=*/5);
  EXPECT_THAT(ch->Sizes(), ElementsAre(4u, 4u, 1u));
}

TEST_F(TxnBatchingTest, WithoutLingerAPartialBatchGoesAtOnce) {
  Start(/*group_batch=*/5, /*group_linger=*/0, /*batch_max=*/10, /*linger_ms=*/500);
  Publish(2);
  auto ch = Hello(1);
  EXPECT_THAT(ch->Sizes(), ElementsAre(2u));  // the group's 0 beats the service's 500
}

TEST_F(TxnBatchingTest, LingeringBatchIsToppedUpAndSentWhenFull) {
  Start(/*group_batch=*/5, /*group_linger=*/100);
  Publish(2);
  auto ch = Hello(1);
  EXPECT_TRUE(ch->Sizes().empty());
  EXPECT_EQ(Leased(), 2);  // held while it lingers
  Publish(2);
  EXPECT_TRUE(ch->Sizes().empty());
  Publish(3);  // fills it: 5 go, 2 stay available
  EXPECT_THAT(ch->Sizes(), ElementsAre(5u));
  std::vector<protocol::Prepare> p = ch->Prepares();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].messages[0].value, "m0");
  EXPECT_EQ(Leased(), 5);
}

TEST_F(TxnBatchingTest, LingeringBatchGoesOutWhenDueAtTheNextTick) {
  Start(/*group_batch=*/5, /*group_linger=*/100);
  Publish(2);
  auto ch = Hello(1);
  clock_.Advance(99);
  engine_->Tick();
  EXPECT_TRUE(ch->Sizes().empty());
  clock_.Advance(1);
  engine_->Tick();
  EXPECT_THAT(ch->Sizes(), ElementsAre(2u));
}

TEST_F(TxnBatchingTest, LingerIsCountedFromTheBatchsFirstLease) {
  Start(/*group_batch=*/5, /*group_linger=*/100);
  Publish(1);
  auto ch = Hello(1);
  clock_.Advance(60);
  Publish(1);  // topped up; the deadline stays at +100
  clock_.Advance(40);
  engine_->Tick();
  EXPECT_THAT(ch->Sizes(), ElementsAre(2u));
}

TEST_F(TxnBatchingTest, ServiceDefaultLingerAppliesWhenTheGroupSetsNone) {
  Start(std::nullopt, std::nullopt, /*batch_max=*/5, /*linger_ms=*/50);
  Publish(3);
  auto ch = Hello(1);
  EXPECT_TRUE(ch->Sizes().empty());
  clock_.Advance(50);
  engine_->Tick();
  EXPECT_THAT(ch->Sizes(), ElementsAre(3u));
}

TEST_F(TxnBatchingTest, ServiceDefaultLingerIsCappedByHalfTheAckTimeout) {
  Start(std::nullopt, std::nullopt, /*batch_max=*/5, /*linger_ms=*/1000, /*ack_timeout_ms=*/80);
  Publish(3);
  auto ch = Hello(1);
  EXPECT_TRUE(ch->Sizes().empty());
  clock_.Advance(40);  // half of 80, well before the leases expire
  engine_->Tick();
  EXPECT_THAT(ch->Sizes(), ElementsAre(3u));
}

TEST_F(TxnBatchingTest, DisconnectReleasesALingeringBatch) {
  Start(/*group_batch=*/5, /*group_linger=*/100);
  Publish(2);
  auto ch = Hello(1);
  ASSERT_EQ(Leased(), 2);
  engine_->OnDisconnect(ch.get());
  EXPECT_EQ(Leased(), 0);
  // Another participant gets them, as redeliveries.
  auto other = Hello(1, "p2");
  clock_.Advance(100);
  engine_->Tick();
  std::vector<protocol::Prepare> p = other->Prepares();
  ASSERT_EQ(p.size(), 1u);
  ASSERT_EQ(p[0].messages.size(), 2u);
  EXPECT_EQ(p[0].messages[0].delivery_count, 2u);
  EXPECT_TRUE(ch->Sizes().empty());
}

TEST_F(TxnBatchingTest, TakeoverReleasesTheOldConnectionsLingeringBatch) {
  Start(/*group_batch=*/5, /*group_linger=*/100);
  Publish(2);
  auto old_ch = Hello(1);
  ASSERT_EQ(Leased(), 2);
  auto new_ch = Hello(1);  // same participant id: the old one is fenced
  EXPECT_EQ(old_ch->closed(), "fenced");
  // The new connection leases them afresh (delivery count 2) and lingers.
  EXPECT_EQ(Leased(), 2);
  clock_.Advance(100);
  engine_->Tick();
  std::vector<protocol::Prepare> p = new_ch->Prepares();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].messages.size(), 2u);
  EXPECT_EQ(p[0].messages[0].delivery_count, 2u);
  EXPECT_TRUE(old_ch->Sizes().empty());
}

TEST(TxnCoordinatorOptionsTest, LingerOutOfRangeIsRefused) {
  TxnCoordinatorOptions o;
  o.linger_ms = -1;
  EXPECT_THAT(ValidateTxnCoordinatorOptions(o),
              ::once::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        ::testing::HasSubstr("linger_ms")));
  o.linger_ms = 1001;
  EXPECT_THAT(ValidateTxnCoordinatorOptions(o),
              ::once::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        ::testing::HasSubstr("linger_ms")));
  o.linger_ms = 1000;
  EXPECT_THAT(ValidateTxnCoordinatorOptions(o), IsOk());
}

TEST(TxnCoordinatorOptionsTest, FinishDelayOutOfRangeIsRefused) {
  TxnCoordinatorOptions o;
  for (int64_t bad : {int64_t{-1}, int64_t{1001}}) {
    o.finish_delay_ms = bad;
    EXPECT_THAT(ValidateTxnCoordinatorOptions(o),
                ::once::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("finish_delay_ms")));
  }
  o.finish_delay_ms = 1000;
  EXPECT_THAT(ValidateTxnCoordinatorOptions(o), IsOk());
}

}  // namespace
}  // namespace once::coordinator
