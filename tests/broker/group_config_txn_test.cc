// The exactly-once batching settings of a group (txn_batch_max,
// txn_linger_ms): ranges, the guarantee they need, and their bound by the
// ack timeout.
#include <optional>

#include "broker/group_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

GroupConfig ExactlyOnce() {
  GroupConfig c;
  c.guarantee = Guarantee::kExactlyOnce;
  return c;
}

TEST(GroupConfigTxnTest, UnsetIsValidForEveryGuarantee) {
  for (Guarantee g : {Guarantee::kAtLeastOnce, Guarantee::kIdempotent, Guarantee::kExactlyOnce}) {
    GroupConfig c;
    c.guarantee = g;
    EXPECT_THAT(ValidateGroupConfig(c, "orders"), IsOk()) << GuaranteeName(g);
  }
}

TEST(GroupConfigTxnTest, BoundsAreAccepted) {
  GroupConfig c = ExactlyOnce();
  for (int batch : {1, 500, kMaxTxnBatchMax}) {
    c.txn_batch_max = batch;
    EXPECT_THAT(ValidateGroupConfig(c, "orders"), IsOk()) << batch;
  }
  for (int64_t linger : {int64_t{0}, int64_t{5}, kMaxTxnLingerMs}) {
    c.txn_linger_ms = linger;
    EXPECT_THAT(ValidateGroupConfig(c, "orders"), IsOk()) << linger;
  }
}

TEST(GroupConfigTxnTest, BatchMaxOutOfRangeNamesTheSettingAndRange) {
  GroupConfig c = ExactlyOnce();
  for (int batch : {0, -1, kMaxTxnBatchMax + 1, 1 << 30}) {
    c.txn_batch_max = batch;
    EXPECT_THAT(ValidateGroupConfig(c, "orders"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("txn_batch_max"), HasSubstr("1..10000"))))
        << batch;
  }
}

TEST(GroupConfigTxnTest, LingerOutOfRangeNamesTheSettingAndRange) {
  GroupConfig c = ExactlyOnce();
  for (int64_t linger : {int64_t{-1}, kMaxTxnLingerMs + 1, int64_t{1} << 40}) {
    c.txn_linger_ms = linger;
    EXPECT_THAT(ValidateGroupConfig(c, "orders"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("txn_linger_ms"), HasSubstr("0..1000"))))
        << linger;
  }
}

TEST(GroupConfigTxnTest, LingerMustStayBelowTheAckTimeout) {
  GroupConfig c = ExactlyOnce();
  c.ack_timeout_ms = 200;
  c.txn_linger_ms = 199;
  EXPECT_THAT(ValidateGroupConfig(c, "orders"), IsOk());
  c.txn_linger_ms = 200;
  EXPECT_THAT(ValidateGroupConfig(c, "orders"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("txn_linger_ms"), HasSubstr("ack_timeout_ms"))));
}

TEST(GroupConfigTxnTest, RefusedForGroupsThatAreNotExactlyOnce) {
  for (Guarantee g : {Guarantee::kAtLeastOnce, Guarantee::kIdempotent}) {
    GroupConfig batch;
    batch.guarantee = g;
    batch.txn_batch_max = 10;
    EXPECT_THAT(ValidateGroupConfig(batch, "orders"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("txn_batch_max"), HasSubstr("exactly-once groups only"),
                               HasSubstr(GuaranteeName(g)))));
    GroupConfig linger;
    linger.guarantee = g;
    linger.txn_linger_ms = 0;  // even the neutral value: it is a mistake to set it
    EXPECT_THAT(ValidateGroupConfig(linger, "orders"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("txn_linger_ms"), HasSubstr("exactly-once groups only"))));
  }
}

TEST(GroupConfigTxnTest, SettingsTakePartInEquality) {
  GroupConfig a = ExactlyOnce(), b = ExactlyOnce();
  EXPECT_EQ(a, b);
  b.txn_batch_max = 100;
  EXPECT_NE(a, b);
  a.txn_batch_max = 100;
  EXPECT_EQ(a, b);
  a.txn_linger_ms = 0;  // set to 0 is not unset
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace once::broker
