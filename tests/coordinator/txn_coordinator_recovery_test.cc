// TxnCoordinator recovery and operator actions: a restart deletes committed
// batches and re-sends COMMIT; forced commit and abort with their audit log.
#include "coordinator/txn_coordinator.h"

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/txn_state.h"
#include "coordinator/txn_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/txn_protocol.h"
#include "tests/coordinator/txn_coordinator_fixture.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;

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

}  // namespace
}  // namespace once::coordinator
