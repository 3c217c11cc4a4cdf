// The fixture of the TxnCoordinator tests: the 2PC engine against a
// GoogleMock participant (MockChannel), a real broker (disk topic, consumer
// groups), a real TxnStore in a temp directory and a FakeClock. Executor
// work (delivery loops, the broker delete after DONE) runs inline unless a
// test defers it; only the store's commit callbacks come from its writer
// thread, so waits for frames are bounded.
#ifndef ONCE_TESTS_COORDINATOR_TXN_COORDINATOR_FIXTURE_H_
#define ONCE_TESTS_COORDINATOR_TXN_COORDINATOR_FIXTURE_H_

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/participant_channel.h"
#include "coordinator/txn_coordinator.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_state.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/txn_protocol.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {

inline constexpr absl::Duration kWait = absl::Seconds(10);

class MockChannel : public ParticipantChannel {
 public:
  MockChannel() {
    ON_CALL(*this, Send(::testing::_)).WillByDefault([this](protocol::Frame f) {
      absl::MutexLock lock(&mu_);
      frames_.push_back(std::move(f));
    });
    ON_CALL(*this, Close(::testing::_, ::testing::_))
        .WillByDefault([this](absl::string_view code, absl::string_view) {
          absl::MutexLock lock(&mu_);
          closed_code_ = std::string(code);
        });
  }
  MOCK_METHOD(void, Send, (protocol::Frame frame), (override));
  MOCK_METHOD(void, Close, (absl::string_view code, absl::string_view message), (override));

  // The first frame of type T at or after position `*from` (advanced past
  // it), waiting up to kWait; nullopt when none came.
  template <typename T>
  std::optional<T> Next(size_t* from) {
    absl::MutexLock lock(&mu_);
    auto found = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      for (size_t i = *from; i < frames_.size(); ++i) {
        if (std::holds_alternative<T>(frames_[i])) return true;
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&found), kWait)) return std::nullopt;
    for (size_t i = *from; i < frames_.size(); ++i) {
      if (std::holds_alternative<T>(frames_[i])) {
        *from = i + 1;
        return std::get<T>(frames_[i]);
      }
    }
    return std::nullopt;
  }
  template <typename T>
  int Count() {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& f : frames_) n += std::holds_alternative<T>(f) ? 1 : 0;
    return n;
  }
  std::string closed_code() {
    absl::MutexLock lock(&mu_);
    return closed_code_;
  }

  size_t cursor = 0;  // for the tests' Next calls

 private:
  absl::Mutex mu_;
  std::vector<protocol::Frame> frames_ ABSL_GUARDED_BY(mu_);
  std::string closed_code_ ABSL_GUARDED_BY(mu_);
};

class TxnCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_txn_XXXXXX";
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
    tc.partitions = 1;
    tc.backend = broker::Backend::kDisk;
    ASSERT_THAT(broker_->CreateTopic("t", tc), ::once::testing::IsOk());
    broker::GroupConfig gc;
    gc.guarantee = broker::Guarantee::kExactlyOnce;
    gc.backoff_base_ms = 0;
    gc.ack_timeout_ms = 600'000;
    ASSERT_THAT(registry_->CreateGroup("t", "g", gc), ::once::testing::IsOk());
    gc.ack_timeout_ms = 100;
    ASSERT_THAT(registry_->CreateGroup("t", "short", gc), ::once::testing::IsOk());
    gc.ack_timeout_ms = 600'000;
    gc.mode = broker::GroupMode::kOrdered;
    ASSERT_THAT(registry_->CreateGroup("t", "ordered", gc), ::once::testing::IsOk());
    gc.mode = broker::GroupMode::kShared;
    gc.guarantee = broker::Guarantee::kAtLeastOnce;
    ASSERT_THAT(registry_->CreateGroup("t", "plain", gc), ::once::testing::IsOk());
    ONCE_ASSERT_OK_AND_ASSIGN(group_, registry_->GetGroup("t", "g"));
    OpenEngine();
  }

  void TearDown() override {
    // The store first: its Close runs the callbacks still queued (they
    // call into the engine).
    if (store_) store_->Close();
    engine_.reset();
    store_.reset();
    registry_.reset();
    broker_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // (Re)opens the store and a new engine over it, as a restart of onced
  // does (the broker stays: its leases are then released by Ack positions).
  void OpenEngine() {
    if (store_) store_->Close();
    engine_.reset();
    store_.reset();
    TxnStoreOptions so;
    so.clock = &clock_;
    ONCE_ASSERT_OK_AND_ASSIGN(store_, TxnStore::Open(dir_ + "/coordinator.db", so));
    TxnCoordinatorOptions o;
    o.batch_max = 10;
    o.vote_timeout_ms = 1'000;
    o.commit_retry_initial_ms = 100;
    o.commit_retry_max_ms = 400;
    o.hello_wait_ms = 5'000;
    o.finish_delay_ms = finish_delay_ms_;
    o.clock = &clock_;
    broker::GroupRegistry* registry = registry_.get();
    engine_ = std::make_unique<TxnCoordinator>(
        store_.get(),
        [registry](absl::string_view topic, absl::string_view group) {
          return registry->GetGroup(topic, group);
        },
        [this](std::function<void()> work) {
          if (defer_work_) {
            deferred_.push_back(std::move(work));
          } else {
            work();
          }
        },
        o, &metrics_);
    ASSERT_THAT(engine_->Recover(), ::once::testing::IsOk());
  }

  void Publish(int n) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto topic, broker_->GetTopic("t"));
    std::vector<broker::Record> records;
    for (int i = 0; i < n; ++i) {
      broker::Record r;
      r.value = absl::StrCat("m", i);
      records.push_back(std::move(r));
    }
    ASSERT_THAT(topic->Publish(std::move(records)), ::once::testing::IsOk());
    registry_->NotifyPublished("t");
  }

  std::shared_ptr<::testing::NiceMock<MockChannel>> NewChannel() {
    return std::make_shared<::testing::NiceMock<MockChannel>>();
  }

  // Says hello and returns the welcome.
  protocol::Welcome Hello(const std::shared_ptr<::testing::NiceMock<MockChannel>>& ch,
                          std::vector<std::string> in_doubt = {}, uint32_t window = 1,
                          const std::string& participant = "p1") {
    protocol::Hello h;
    h.participant = participant;
    h.topic = "t";
    h.group = "g";
    h.in_doubt = std::move(in_doubt);
    h.window = window;
    engine_->OnHello(ch, h);
    std::optional<protocol::Welcome> w = ch->Next<protocol::Welcome>(&ch->cursor);
    EXPECT_TRUE(w.has_value()) << "no welcome";
    return w.value_or(protocol::Welcome{});
  }

  void Vote(const std::shared_ptr<::testing::NiceMock<MockChannel>>& ch, const protocol::Welcome& w,
            const std::string& txn, bool yes) {
    engine_->OnVote(ch.get(), protocol::Vote{txn, w.epoch, w.generation, yes, yes ? "" : "nope"});
  }
  void Done(const std::shared_ptr<::testing::NiceMock<MockChannel>>& ch, const protocol::Welcome& w,
            const std::string& txn) {
    engine_->OnDone(ch.get(), protocol::Done{txn, w.epoch, w.generation});
  }

  int64_t Acked() { return group_->Describe().acked; }

  // 20 messages published, a session with a window of 2 and its first two
  // PREPAREs (10 messages each; empty txn ids when they did not come).
  struct TwoPrepared {
    std::shared_ptr<::testing::NiceMock<MockChannel>> ch;
    protocol::Welcome w;
    protocol::Prepare a;
    protocol::Prepare b;
  };
  TwoPrepared PublishAndPrepareTwo() {
    Publish(20);
    TwoPrepared t;
    t.ch = NewChannel();
    t.w = Hello(t.ch, {}, /*window=*/2);
    t.a = t.ch->Next<protocol::Prepare>(&t.ch->cursor).value_or(protocol::Prepare{});
    t.b = t.ch->Next<protocol::Prepare>(&t.ch->cursor).value_or(protocol::Prepare{});
    EXPECT_FALSE(t.a.txn.empty() || t.b.txn.empty()) << "two PREPAREs expected";
    return t;
  }
  // Votes YES for `txn`; true once its COMMIT came.
  bool VoteYesAndCommit(TwoPrepared& t, const std::string& txn) {
    Vote(t.ch, t.w, txn, true);
    return t.ch->Next<protocol::Commit>(&t.ch->cursor).has_value();
  }

  // Waits (bounded) until the store says `txn` is done.
  bool WaitDone(const std::string& txn) {
    for (int i = 0; i < 500; ++i) {
      absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(txn);
      if (r.ok() && r->has_value() && (*r)->state == TxnState::kDone) {
        // The engine's callback runs right after; let it finish.
        if (!engine_->List(TxnState::kCommitted, 0)->empty()) {
          absl::SleepFor(absl::Milliseconds(10));
          continue;
        }
        return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // Runs the executor work deferred so far (and what it queues), in order.
  void RunDeferred() {
    defer_work_ = false;
    for (int i = 0; i < 100 && !deferred_.empty(); ++i) {
      std::function<void()> work = std::move(deferred_.front());
      deferred_.pop_front();
      work();
    }
    EXPECT_TRUE(deferred_.empty());
  }

  // TxnCoordinatorOptions::finish_delay_ms of the next OpenEngine.
  int64_t finish_delay_ms_ = 0;
  // The executor runs work inline, or queues it while defer_work_ is set.
  bool defer_work_ = false;
  std::deque<std::function<void()>> deferred_;
  std::string dir_;
  ::once::testing::FakeClock clock_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> registry_;
  std::shared_ptr<broker::ConsumerGroup> group_;
  std::unique_ptr<TxnStore> store_;
  TxnMetrics metrics_;
  std::unique_ptr<TxnCoordinator> engine_;
};

}  // namespace once::coordinator

#endif  // ONCE_TESTS_COORDINATOR_TXN_COORDINATOR_FIXTURE_H_
