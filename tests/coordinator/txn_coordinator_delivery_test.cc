// TxnCoordinator delivery: the commit path, aborts (vote NO, vote timeout,
// disconnect before the vote, an expired lease at the commit point) with
// redelivery, the broker delete after DONE, duplicate DONEs and the
// participant's window.
#include "coordinator/txn_coordinator.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_state.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/txn_protocol.h"
#include "tests/coordinator/txn_coordinator_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::StatusIs;
using ::testing::_;

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

// A message is PREPAREd once written, before its fdatasync; the COMMIT
// record waits until it is durable. The test's notifier listener runs
// inside the publish's group commit, between the write and the sync, after
// the engine's own (added at HELLO) sent the PREPARE: it votes YES there
// and sees no COMMIT for as long as it keeps the sync from running.
TEST_F(TxnCoordinatorTest, TheCommitRecordWaitsUntilThePreparedMessagesAreDurable) {
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  struct Seen {
    std::atomic<bool> ran{false};
    std::string txn;
    int64_t durable_end = -1;
    int commits = -1;
    bool recorded = true;
  } seen;
  broker::Log* log = group_->topic()->partition(0);
  const int64_t id = group_->notifier().AddListener([&] {
    if (seen.ran.exchange(true)) return;
    std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
    if (!p.has_value()) return;
    seen.txn = p->txn;
    seen.durable_end = log->NextOffset();
    Vote(ch, w, p->txn, true);
    // Long enough for the store's writer to commit a record written at once.
    absl::SleepFor(absl::Milliseconds(200));
    seen.commits = ch->Count<protocol::Commit>();
    absl::StatusOr<std::optional<TxnRecord>> rec = store_->Find(p->txn);
    seen.recorded = !rec.ok() || rec->has_value();
  });
  Publish(1);
  group_->notifier().RemoveListener(id);
  ASSERT_FALSE(seen.txn.empty()) << "no PREPARE before the message was durable";
  EXPECT_EQ(seen.durable_end, 0) << "the message was durable already";
  EXPECT_EQ(seen.commits, 0) << "COMMIT sent before the message was durable";
  EXPECT_FALSE(seen.recorded) << "COMMIT record written before the message was durable";
  // Durable now: the decision is written and the COMMIT sent.
  std::optional<protocol::Commit> c = ch->Next<protocol::Commit>(&ch->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, seen.txn);
  Done(ch, w, seen.txn);
  ASSERT_TRUE(WaitDone(seen.txn));
  EXPECT_EQ(Acked(), 1);
}

// The histograms time on the monotonic clock, not on the (frozen, fake)
// record clock, and at sub-millisecond resolution: a vote 2 ms after the
// PREPARE is observed as 2 ms or more, in no bucket below it.
TEST_F(TxnCoordinatorTest, PrepareAndCommitLatenciesAreTimedOnTheMonotonicClock) {
  Publish(1);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
  ASSERT_TRUE(p.has_value());
  absl::SleepFor(absl::Milliseconds(2));
  Vote(ch, w, p->txn, true);
  ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
  std::string out;
  metrics_.Render(TxnGauges{}, TxnStoreCounters{}, &out);
  EXPECT_THAT(out, ::testing::HasSubstr("once_txn_prepare_seconds_count 1\n"));
  EXPECT_THAT(out, ::testing::HasSubstr("once_txn_prepare_seconds_bucket{le=\"0.001\"} 0\n"));
  EXPECT_THAT(out, ::testing::HasSubstr("once_txn_commit_seconds_count 1\n"));
  // The COMMIT record's fsync took some time: not a 0 of a coarse clock.
  EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr("once_txn_commit_seconds_sum 0\n")));
  const size_t at = out.find("once_txn_prepare_seconds_sum ");
  ASSERT_NE(at, std::string::npos);
  const double prepare_s = std::stod(out.substr(at + sizeof("once_txn_prepare_seconds_sum")));
  EXPECT_GE(prepare_s, 0.002);
  EXPECT_LT(prepare_s, 60.0);
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

// A message whose every transaction votes NO (a handler that always
// fails on it) is prepared alone from its third delivery on: its
// batch-mates commit, and only it reaches max_deliveries (5) and the
// dead-letter topic.
TEST_F(TxnCoordinatorTest, AMessageThatAlwaysFailsIsIsolatedFromItsBatchMates) {
  Publish(4);
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  const std::string poison = "t/0/1";
  std::vector<std::string> committed;
  std::vector<size_t> poison_batches;  // the size of each PREPARE holding it
  for (int round = 0; round < 20 && (committed.size() < 3 || poison_batches.size() < 5); ++round) {
    std::optional<protocol::Prepare> p = ch->Next<protocol::Prepare>(&ch->cursor);
    if (!p.has_value()) break;  // nothing more was delivered
    const bool failing = std::any_of(p->messages.begin(), p->messages.end(),
                                     [&](const protocol::TxnMessage& m) { return m.id == poison; });
    if (failing) {
      poison_batches.push_back(p->messages.size());
      Vote(ch, w, p->txn, false);
      ASSERT_TRUE(ch->Next<protocol::Abort>(&ch->cursor).has_value());
      continue;
    }
    Vote(ch, w, p->txn, true);
    ASSERT_TRUE(ch->Next<protocol::Commit>(&ch->cursor).has_value());
    Done(ch, w, p->txn);
    ASSERT_TRUE(WaitDone(p->txn));
    for (const protocol::TxnMessage& m : p->messages) committed.push_back(m.id);
  }
  EXPECT_THAT(committed, ::testing::UnorderedElementsAre("t/0/0", "t/0/2", "t/0/3"));
  // Deliveries 1 and 2 in the batch of four, 3 to 5 alone.
  EXPECT_THAT(poison_batches, ::testing::ElementsAre(4u, 4u, 1u, 1u, 1u));
  for (int i = 0; i < 500 && group_->Describe().dead_lettered < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(group_->Describe().dead_lettered, 1);
  EXPECT_EQ(ch->Count<protocol::Prepare>(), 8);  // 2 batches + 6 alone
  EXPECT_EQ(metrics_.aborts("vote_no"), 5);
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

TEST_F(TxnCoordinatorTest, TheBrokerDeleteAfterDoneDoesNotHoldUpTheNextVote) {
  TwoPrepared t = PublishAndPrepareTwo();
  auto& [ch, w, a, b] = t;
  ASSERT_FALSE(a.txn.empty() || b.txn.empty());
  ASSERT_TRUE(VoteYesAndCommit(t, a.txn));
  // DONE(A) then VOTE(B), as one burst of the participant: the broker
  // delete of A's batch (a durable group-store write) goes to the executor,
  // so B's vote is decided without waiting for it.
  defer_work_ = true;
  Done(ch, w, a.txn);
  EXPECT_EQ(Acked(), 0);
  Vote(ch, w, b.txn, true);
  std::optional<protocol::Commit> c = ch->Next<protocol::Commit>(&ch->cursor);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->txn, b.txn);
  EXPECT_EQ(Acked(), 0);
  RunDeferred();
  EXPECT_EQ(Acked(), 10);
  Done(ch, w, b.txn);
  ASSERT_TRUE(WaitDone(b.txn));  // and A: no committed txn is left
  EXPECT_EQ(Acked(), 20);
  ONCE_ASSERT_OK_AND_ASSIGN(std::optional<TxnRecord> rec, store_->Find(a.txn));
  EXPECT_TRUE(!rec.has_value() || rec->state == TxnState::kDone);
}

TEST_F(TxnCoordinatorTest, DonesWithinTheFinishDelayShareOneBrokerDelete) {
  finish_delay_ms_ = 5;
  OpenEngine();
  TwoPrepared t = PublishAndPrepareTwo();
  auto& [ch, w, a, b] = t;
  ASSERT_FALSE(a.txn.empty() || b.txn.empty());
  ASSERT_TRUE(VoteYesAndCommit(t, a.txn));
  ASSERT_TRUE(VoteYesAndCommit(t, b.txn));
  defer_work_ = true;
  Done(ch, w, a.txn);
  Done(ch, w, b.txn);
  EXPECT_EQ(Acked(), 0);  // queued: the work waits the delay, then deletes both
  const int64_t writes = registry_->store()->stats().commits;
  RunDeferred();
  EXPECT_EQ(Acked(), 20);
  EXPECT_EQ(registry_->store()->stats().commits, writes + 1);  // one delete for both
  ASSERT_TRUE(WaitDone(a.txn));
  ASSERT_TRUE(WaitDone(b.txn));
}

TEST_F(TxnCoordinatorTest, AFinishDelayWorksWithAnExecutorThatRunsWorkInline) {
  finish_delay_ms_ = 5;
  OpenEngine();  // defer_work_ is off: the delayed work runs inside OnDone
  TwoPrepared t = PublishAndPrepareTwo();
  ASSERT_FALSE(t.a.txn.empty());
  ASSERT_TRUE(VoteYesAndCommit(t, t.a.txn));
  Done(t.ch, t.w, t.a.txn);
  ASSERT_TRUE(WaitDone(t.a.txn));
  EXPECT_EQ(Acked(), 10);
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
