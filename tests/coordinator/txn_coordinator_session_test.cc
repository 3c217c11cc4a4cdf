// TxnCoordinator participant sessions: HELLO and reconnects (in-doubt
// resolution, fencing, COMMIT re-sent to a new connection), stale
// generations and epochs, frames about another participant's or a closed
// txn, and malformed sessions.
#include "coordinator/txn_coordinator.h"

#include <optional>

#include "absl/status/status.h"
#include "coordinator/txn_metrics.h"
#include "coordinator/txn_state.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/txn_protocol.h"
#include "tests/coordinator/txn_coordinator_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::StatusIs;
using ::testing::_;

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

TEST_F(TxnCoordinatorTest, AReAskLooksUpTheStoreOnTheExecutorNotTheCallersThread) {
  auto ch = NewChannel();
  protocol::Welcome w = Hello(ch);
  defer_work_ = true;
  Vote(ch, w, "1.999", true);  // never open: the answer needs the store
  EXPECT_EQ(ch->Count<protocol::Abort>(), 0);
  RunDeferred();
  std::optional<protocol::Abort> a = ch->Next<protocol::Abort>(&ch->cursor);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->txn, "1.999");
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

}  // namespace
}  // namespace once::coordinator
