// The 2PC engine against a GoogleMock participant, a real broker (disk
// topic, consumer groups), a real TxnStore in a temp directory and a
// FakeClock. Executor work (delivery loops, the broker delete after DONE)
// runs inline unless a test defers it; only the store's commit callbacks
// come from its writer thread, so waits for frames are bounded.
#include "coordinator/txn_coordinator.h"

#include <stdlib.h>

#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/participant_channel.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::_;
using ::testing::NiceMock;

constexpr absl::Duration kWait = absl::Seconds(10);

class MockChannel : public ParticipantChannel {
 public:
  MockChannel() {
    ON_CALL(*this, Send(_)).WillByDefault([this](protocol::Frame f) {
      absl::MutexLock lock(&mu_);
      frames_.push_back(std::move(f));
    });
    ON_CALL(*this, Close(_, _)).WillByDefault([this](absl::string_view code, absl::string_view) {
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
    ASSERT_THAT(broker_->CreateTopic("t", tc), IsOk());
    broker::GroupConfig gc;
    gc.guarantee = broker::Guarantee::kExactlyOnce;
    gc.backoff_base_ms = 0;
    gc.ack_timeout_ms = 600'000;
    ASSERT_THAT(registry_->CreateGroup("t", "g", gc), IsOk());
    gc.ack_timeout_ms = 100;
    ASSERT_THAT(registry_->CreateGroup("t", "short", gc), IsOk());
    gc.ack_timeout_ms = 600'000;
    gc.mode = broker::GroupMode::kOrdered;
    ASSERT_THAT(registry_->CreateGroup("t", "ordered", gc), IsOk());
    gc.mode = broker::GroupMode::kShared;
    gc.guarantee = broker::Guarantee::kAtLeastOnce;
    ASSERT_THAT(registry_->CreateGroup("t", "plain", gc), IsOk());
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
    ASSERT_THAT(engine_->Recover(), IsOk());
  }

  void Publish(int n) {
    ONCE_ASSERT_OK_AND_ASSIGN(auto topic, broker_->GetTopic("t"));
    std::vector<broker::Record> records;
    for (int i = 0; i < n; ++i) {
      broker::Record r;
      r.value = absl::StrCat("m", i);
      records.push_back(std::move(r));
    }
    ASSERT_THAT(topic->Publish(std::move(records)), IsOk());
    registry_->NotifyPublished("t");
  }

  std::shared_ptr<NiceMock<MockChannel>> NewChannel() {
    return std::make_shared<NiceMock<MockChannel>>();
  }

  // Says hello and returns the welcome.
  protocol::Welcome Hello(const std::shared_ptr<NiceMock<MockChannel>>& ch,
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

  void Vote(const std::shared_ptr<NiceMock<MockChannel>>& ch, const protocol::Welcome& w,
            const std::string& txn, bool yes) {
    engine_->OnVote(ch.get(), protocol::Vote{txn, w.epoch, w.generation, yes, yes ? "" : "nope"});
  }
  void Done(const std::shared_ptr<NiceMock<MockChannel>>& ch, const protocol::Welcome& w,
            const std::string& txn) {
    engine_->OnDone(ch.get(), protocol::Done{txn, w.epoch, w.generation});
  }

  int64_t Acked() { return group_->Describe().acked; }

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

TEST_F(TxnCoordinatorTest, CommitPathDeletesTheBatch) {
  Publish(3);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  EXPECT_EQ(w.epoch, 1u);
  EXPECT_EQ(w.generation, 1u);
  EXPECT_TRUE(w.resolutions.empty());
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->txn, "1.1");
  ASSERT_EQ(p->messages.size(), 3u);
  EXPECT_EQ(p->messages[0].id, "t/0/0");
  EXPECT_EQ(p->messages[2].value, "m2");
  EXPECT_EQ(p->messages[0].delivery_count, 1u);
  Vote(ch, w, p->txn, true);
  std::optional<protocol::Commit> c = ch->Next<protocol::Commit>(&ch->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, p->txn);
  // The COMMIT frame went out only after the record was durable.
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> rec, store_->Find(p->txn));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, TxnState::kCommitted);
  EXPECT_EQ(rec->messages.size(), 3u);
  EXPECT_EQ(Acked(), 0);
  Done(ch, w, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  EXPECT_EQ(Acked(), 3);
  EXPECT_EQ(group_->Describe().lag, 0);
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 1);
}

TEST_F(TxnCoordinatorTest, VoteNoAbortsAndRedeliversWithCountPlusOne) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  Vote(ch, w, p->txn, false);
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, p->txn);
  EXPECT_THAT(a->reason, ::testing::HasSubstr("nope"));
  std::optional<protocol::Prepare> again = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->txn, p->txn);
  ASSERT_EQ(again->messages.size(), 1u);
  EXPECT_EQ(again->messages[0].id, p->messages[0].id);
  EXPECT_EQ(again->messages[0].delivery_count, 2u);
  EXPECT_EQ(metrics_.aborts("vote_no"), 1);
  EXPECT_THAT(engine_->Get(p->txn), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TxnCoordinatorTest, VoteTimeoutAborts) {
  Publish(1);
  auto ch = NewChannel();
  Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  clock_.Advance(999);
  engine_->Tick();
  EXPECT_EQ(ch->Count<protocol::Abort>(), 0);
  clock_.Advance(2);
  engine_->Tick();
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, p->txn);
  EXPECT_EQ(metrics_.aborts("vote_timeout"), 1);
  std::optional<protocol::Prepare> again = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->messages[0].delivery_count, 2u);
}

TEST_F(TxnCoordinatorTest, DisconnectBeforeVoteReleasesTheLeases) {
  Publish(2);
  auto ch = NewChannel();
  Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  EXPECT_CALL(*ch, Send(_)).Times(0);  // nothing more to a gone connection
  engine_->OnDisconnect(ch.get());
  EXPECT_EQ(metrics_.aborts("disconnect"), 1);
  auto ch2 = NewChannel();
  Hello(ch2);
  std::optional<protocol::Prepare> again = ch2->Next<protocol::Prepare>(&ch2->cursor);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->messages.size(), 2u);
  EXPECT_EQ(again->messages[0].delivery_count, 2u);
}

TEST_F(TxnCoordinatorTest, DisconnectAfterCommitBeforeDoneResendsCommitAfterHello) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  Vote(ch, w, p->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  engine_->OnDisconnect(ch.get());
  // Committed stays committed: the leases are pinned, no redelivery.
  clock_.Advance(5'000);
  engine_->Tick();
  auto ch2 = NewChannel();
  protocol::Welcome w2 = Hello(ch2);  // does not list it: COMMIT follows the welcome
  EXPECT_EQ(w2.generation, 2u);
  std::optional<protocol::Commit> c = ch2->Next<protocol::Commit>(&ch2->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, p->txn);
  EXPECT_EQ(c->generation, 2u);
  EXPECT_EQ(ch2->Count<protocol::Prepare>(), 0);
  // Re-sent with backoff until DONE.
  clock_.Advance(100);
  engine_->Tick();
  EXPECT_EQ(ch2->Count<protocol::Commit>(), 2);
  Done(ch2, w2, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  EXPECT_EQ(Acked(), 1);
  clock_.Advance(10'000);
  engine_->Tick();
  EXPECT_EQ(ch2->Count<protocol::Commit>(), 2);
}

TEST_F(TxnCoordinatorTest, ADoneOnALaterConnectionFreesNoSlotOfThatConnection) {
  // A transaction committed on connection 1 is done on connection 2. A
  // session object can be allocated where an ended one was, so the same
  // channel object stands for both here: only the generation tells them
  // apart, and connection 2's one slot (window 1) must stay taken by its
  // own PREPARE.
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> first = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(first.has_value());
  Vote(ch, w, first->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  engine_->OnDisconnect(ch.get());
  Publish(1);
  protocol::Welcome w2 = Hello(ch);
  EXPECT_EQ(w2.generation, 2u);
  std::optional<protocol::Prepare> second = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->generation, 2u);
  Publish(1);  // ready for a third transaction, once the slot is free
  Done(ch, w2, first->txn);
  ASSERT_TRUE(WaitDone(first->txn));
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 2);  // the second is still in flight
  Vote(ch, w2, second->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  Done(ch, w2, second->txn);
  ASSERT_TRUE(WaitDone(second->txn));
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 3);  // now the slot is free
}

TEST_F(TxnCoordinatorTest, TheBrokerDeleteAfterDoneDoesNotHoldUpTheNextVote) {
  Publish(20);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch, {}, /*window=*/2);
  std::optional<protocol::Prepare> a = ch->Next<protocol::Prepare>(&ch->cursor);
  std::optional<protocol::Prepare> b = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(a.has_value() && b.has_value());
  Vote(ch, w, a->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  // DONE(A) then VOTE(B), as one burst of the participant: the broker
  // delete of A's batch (a durable group-store write) goes to the executor,
  // so B's vote is decided without waiting for it.
  defer_work_ = true;
  Done(ch, w, a->txn);
  EXPECT_EQ(Acked(), 0);
  Vote(ch, w, b->txn, true);
  std::optional<protocol::Commit> c = ch->Next<protocol::Commit>(&ch->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, b->txn);
  EXPECT_EQ(Acked(), 0);
  RunDeferred();
  EXPECT_EQ(Acked(), 10);
  Done(ch, w, b->txn);
  ASSERT_TRUE(WaitDone(b->txn));  // and A: no committed txn is left
  EXPECT_EQ(Acked(), 20);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> rec, store_->Find(a->txn));
  EXPECT_TRUE(!rec.has_value() || rec->state == TxnState::kDone);
}

TEST_F(TxnCoordinatorTest, DuplicateDoneIsIgnored) {
  Publish(2);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  Vote(ch, w, p->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  Done(ch, w, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  Done(ch, w, p->txn);
  EXPECT_EQ(ch->Count<protocol::Error>(), 0);
  EXPECT_EQ(Acked(), 2);
}

TEST_F(TxnCoordinatorTest, StaleGenerationOrEpochChangesNothing) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  engine_->OnVote(ch.get(), protocol::Vote{p->txn, w.epoch, w.generation + 1, true, ""});
  std::optional<protocol::Error> e = ch->Next<protocol::Error>(&ch->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "stale_generation");
  engine_->OnDone(ch.get(), protocol::Done{p->txn, w.epoch + 1, w.generation});
  e = ch->Next<protocol::Error>(&ch->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "stale_generation");
  ONCE_ASSERT_OK_AND_ASSIGN(TxnView v, engine_->Get(p->txn));
  EXPECT_EQ(v.record.state, TxnState::kPreparing);
}

TEST_F(TxnCoordinatorTest, SecondHelloFencesTheFirstConnection) {
  Publish(1);
  auto ch1 = NewChannel();
  protocol::Welcome w1 = Hello(ch1);
  std::optional<protocol::Prepare> p = ch1->Next<protocol::Prepare>(&ch1->cursor);
  ASSERT_TRUE(p.has_value());
  auto ch2 = NewChannel();
  EXPECT_CALL(*ch1, Close(::testing::Eq("fenced"), _)).Times(1);
  protocol::Welcome w2 = Hello(ch2);
  EXPECT_EQ(w2.generation, w1.generation + 1);
  // The first connection's undecided txn was aborted by the hello: a late
  // YES on the fenced connection is refused and changes nothing.
  Vote(ch1, w1, p->txn, true);
  std::optional<protocol::Error> e = ch1->Next<protocol::Error>(&ch1->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "stale_generation");
  EXPECT_EQ(ch1->Count<protocol::Commit>(), 0);
  EXPECT_EQ(metrics_.aborts("hello"), 1);
  std::optional<protocol::Prepare> again = ch2->Next<protocol::Prepare>(&ch2->cursor);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->messages[0].delivery_count, 2u);
}

TEST_F(TxnCoordinatorTest, AFrameAboutAnotherParticipantsTxnIsRefused) {
  Publish(1);
  auto ch1 = NewChannel();
  protocol::Welcome w1 = Hello(ch1, {}, 1, "p1");
  std::optional<protocol::Prepare> p = ch1->Next<protocol::Prepare>(&ch1->cursor);
  ASSERT_TRUE(p.has_value());
  auto ch2 = NewChannel();
  protocol::Welcome w2 = Hello(ch2, {}, 1, "p2");
  // p2's own session is current, but the txn is p1's: neither its YES nor
  // its DONE may decide or finish it.
  Vote(ch2, w2, p->txn, true);
  std::optional<protocol::Error> e = ch2->Next<protocol::Error>(&ch2->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "wrong_participant");
  EXPECT_THAT(e->message, ::testing::HasSubstr("\"p1\""));
  Done(ch2, w2, p->txn);
  e = ch2->Next<protocol::Error>(&ch2->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "wrong_participant");
  ONCE_ASSERT_OK_AND_ASSIGN(TxnView v, engine_->Get(p->txn));
  EXPECT_EQ(v.record.state, TxnState::kPreparing);
  EXPECT_EQ(ch2->Count<protocol::Commit>(), 0);
  // The owner still decides it.
  Vote(ch1, w1, p->txn, true);
  ASSERT_TRUE(ch1->Next<protocol::Commit>(&ch1->cursor).has_value());
  Done(ch1, w1, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  EXPECT_EQ(Acked(), 1);
}

TEST_F(TxnCoordinatorTest, VoteForClosedTxnIsAnsweredWithItsOutcome) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  Vote(ch, w, p->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  Done(ch, w, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  // A re-ask for the done txn: commit (its record says so).
  Vote(ch, w, p->txn, true);
  std::optional<protocol::Commit> c = ch->Next<protocol::Commit>(&ch->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, p->txn);
  // Never open: presumed abort.
  Vote(ch, w, "1.999", true);
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, "1.999");
  EXPECT_EQ(Acked(), 1);
}

TEST_F(TxnCoordinatorTest, HelloResolvesInDoubtIdsAndAbortsUndecidedOnes) {
  Publish(20);
  auto ch1 = NewChannel();
  protocol::Welcome w1 = Hello(ch1, {}, /*window=*/2);
  std::optional<protocol::Prepare> p1 = ch1->Next<protocol::Prepare>(&ch1->cursor);
  std::optional<protocol::Prepare> p2 = ch1->Next<protocol::Prepare>(&ch1->cursor);
  ASSERT_TRUE(p1.has_value());
  ASSERT_TRUE(p2.has_value());
  Vote(ch1, w1, p1->txn, true);
  ASSERT_TRUE(ch1->Next<protocol::Commit>(&ch1->cursor).has_value());
  // p2 voted yes at the participant but its vote never arrived.
  auto ch2 = NewChannel();
  protocol::Welcome w2 = Hello(ch2, {p1->txn, p2->txn, "7.7"}, 2);
  ASSERT_EQ(w2.resolutions.size(), 3u);
  EXPECT_EQ(w2.resolutions[0].outcome, protocol::Outcome::kCommit);
  EXPECT_EQ(w2.resolutions[1].outcome, protocol::Outcome::kAbort);
  EXPECT_EQ(w2.resolutions[2].outcome, protocol::Outcome::kAbort);
  EXPECT_THAT(engine_->Get(p2->txn), StatusIs(absl::StatusCode::kNotFound));
  // The late YES of p2 can no longer commit it.
  Vote(ch2, w2, p2->txn, true);
  std::optional<protocol::Abort> a = ch2->Next<protocol::Abort>(&ch2->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, p2->txn);
}

TEST_F(TxnCoordinatorTest, RecoveryDeletesCommittedBatchesAndResendsCommit) {
  Publish(2);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  Vote(ch, w, p->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  OpenEngine();  // the restart: epoch 2, the batch deleted before serving
  EXPECT_EQ(engine_->epoch(), 2u);
  EXPECT_EQ(Acked(), 2);
  ONCE_ASSERT_OK_AND_ASSIGN(TxnView v, engine_->Get(p->txn));
  EXPECT_EQ(v.record.state, TxnState::kCommitted);
  EXPECT_TRUE(v.record.broker_deleted);
  auto ch2 = NewChannel();
  protocol::Welcome w2 = Hello(ch2, {p->txn});
  EXPECT_EQ(w2.epoch, 2u);
  ASSERT_EQ(w2.resolutions.size(), 1u);
  EXPECT_EQ(w2.resolutions[0].outcome, protocol::Outcome::kCommit);
  EXPECT_EQ(ch2->Count<protocol::Prepare>(), 0);  // never delivered again
  Done(ch2, w2, p->txn);
  ASSERT_TRUE(WaitDone(p->txn));
  EXPECT_EQ(Acked(), 2);
}

TEST_F(TxnCoordinatorTest, OperatorForcedOutcomes) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  EXPECT_THAT(engine_->ForceCommit(p->txn, "why", "test"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(engine_->ForceAbort(p->txn, "stuck", "test"), IsOk());
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_THAT(a->reason, ::testing::HasSubstr("stuck"));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<AuditEntry> audit, store_->AuditLog(p->txn));
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "force_abort");
  EXPECT_EQ(audit[0].reason, "stuck");
  EXPECT_THAT(engine_->ForceAbort("1.404", "x", "test"), StatusIs(absl::StatusCode::kNotFound));
  // The redelivery: commit it, then neither forced outcome applies.
  std::optional<protocol::Prepare> p2 = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p2.has_value());
  Vote(ch, w, p2->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  EXPECT_THAT(engine_->ForceAbort(p2->txn, "x", "test"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(engine_->ForceCommit(p2->txn, "x", "test"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<TxnView> committed, engine_->List(TxnState::kCommitted, 0));
  ASSERT_EQ(committed.size(), 1u);
  EXPECT_EQ(committed[0].record.txn, p2->txn);
}

TEST_F(TxnCoordinatorTest, MalformedSessionsAreRefused) {
  auto ch = NewChannel();
  // A vote before hello.
  engine_->OnVote(ch.get(), protocol::Vote{"1.1", 1, 1, true, ""});
  std::optional<protocol::Error> e = ch->Next<protocol::Error>(&ch->cursor);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "hello_required");
  // A group that is not exactly-once, a bad participant id, no group.
  protocol::Hello h;
  h.participant = "p1";
  h.topic = "t";
  h.group = "plain";
  engine_->OnHello(ch, h);
  EXPECT_EQ(ch->closed_code(), "not_exactly_once");
  h.group = "g";
  h.participant = "bad id";
  auto ch2 = NewChannel();
  engine_->OnHello(ch2, h);
  EXPECT_EQ(ch2->closed_code(), "invalid_field");
  h.participant = "p1";
  h.group = "nope";
  auto ch3 = NewChannel();
  engine_->OnHello(ch3, h);
  EXPECT_EQ(ch3->closed_code(), "group_not_found");
  h.group = "g";
  h.window = 0;
  auto ch4 = NewChannel();
  engine_->OnHello(ch4, h);
  EXPECT_EQ(ch4->closed_code(), "invalid_field");
  h.group = "ordered";
  h.window = 1;
  auto ch5 = NewChannel();
  engine_->OnHello(ch5, h);
  EXPECT_EQ(ch5->closed_code(), "not_supported");
}

// Model rule 1: a lease that expired under an undecided txn makes the
// commit point refuse it (the message may be someone else's by now).
TEST_F(TxnCoordinatorTest, ExpiredLeaseAtTheCommitPointAborts) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Hello h;
  h.participant = "p1";
  h.topic = "t";
  h.group = "short";
  h.window = 1;
  engine_->OnHello(ch, h);
  std::optional<protocol::Welcome> w = ch->Next<protocol::Welcome>(&ch->cursor);
  ASSERT_TRUE(w.has_value());
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  clock_.Advance(150);  // past the group's ack timeout, within the vote timeout
  engine_->OnVote(ch.get(), protocol::Vote{p->txn, w->epoch, w->generation, true, ""});
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, p->txn);
  EXPECT_THAT(a->reason, ::testing::HasSubstr("pinned"));
  EXPECT_EQ(ch->Count<protocol::Commit>(), 0);
  EXPECT_EQ(metrics_.aborts("pin_refused"), 1);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> rec, store_->Find(p->txn));
  EXPECT_FALSE(rec.has_value());  // nothing was written: presumed abort
}

TEST_F(TxnCoordinatorTest, WindowBoundsTransactionsInFlight) {
  Publish(50);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch, {}, /*window=*/3);
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 3);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->messages.size(), 10u);  // batch_max
  Vote(ch, w, p->txn, false);
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 4);
  TxnGauges g = engine_->Gauges();
  EXPECT_EQ(g.preparing, 3);
}

}  // namespace
}  // namespace once::coordinator
