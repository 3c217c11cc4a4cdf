#include "broker/partitioner.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/record.h"
#include "gtest/gtest.h"

namespace once::broker {
namespace {

// These values pin the on-disk partitioning rule (XXH64, seed 0, modulo).
// If one fails, existing topics' keys would move partition: do not "fix" the
// expectation, fix the code.
TEST(PartitionForKeyTest, FixedValuesNeverChange) {
  // XXH64("", seed 0) = 0xEF46DB3751D8E999, the reference value.
  EXPECT_EQ(PartitionForKey("", 8), 0xEF46DB3751D8E999ull % 8);
  EXPECT_EQ(PartitionForKey("", 1024), 409);
  EXPECT_EQ(PartitionForKey("a", 3), 2);  // 0xD24EC4F1A98C6E5B
  EXPECT_EQ(PartitionForKey("a", 1024), 603);
  EXPECT_EQ(PartitionForKey("user-42", 7), 5);  // 0x397E9D3A76AF7C81
  EXPECT_EQ(PartitionForKey("user-42", 1024), 129);
  EXPECT_EQ(PartitionForKey("order:1001", 1024), 777);               // 0xCF9DE1D1BAF80709
  EXPECT_EQ(PartitionForKey("hello world", 8), 0);                   // 0x45AB6734B21E6968
  EXPECT_EQ(PartitionForKey(std::string("\xff\x00\x01", 3), 8), 6);  // raw bytes, NUL kept
  EXPECT_EQ(PartitionForKey("anything", 1), 0);
}

TEST(PartitionForKeyTest, SpreadsKeysEvenly) {
  constexpr int kPartitions = 8;
  constexpr int kKeys = 80'000;
  std::vector<int> counts(kPartitions, 0);
  for (int i = 0; i < kKeys; ++i) {
    const int p = PartitionForKey(absl::StrCat("key-", i), kPartitions);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, kPartitions);
    ++counts[p];
  }
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_NEAR(counts[p], kKeys / kPartitions, kKeys / kPartitions / 20) << "partition " << p;
  }
}

TEST(PartitionerTest, KeylessMessagesGoRoundRobin) {
  Partitioner partitioner(3);
  Record keyless;
  std::vector<int> got;
  for (int i = 0; i < 7; ++i) got.push_back(partitioner.Choose(keyless));
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(PartitionerTest, KeyedMessagesUseTheHashAndDoNotAdvanceRoundRobin) {
  Partitioner partitioner(1024);
  Record keyed;
  keyed.key = "user-42";
  keyed.flags = kRecordHasKey;
  EXPECT_EQ(partitioner.Choose(keyed), 129);
  EXPECT_EQ(partitioner.Choose(keyed), 129);
  EXPECT_EQ(partitioner.NextRoundRobin(), 0);
}

TEST(PartitionerTest, EmptyKeyWithFlagIsStillAKey) {
  Partitioner partitioner(1024);
  Record empty_key;
  empty_key.flags = kRecordHasKey;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(partitioner.Choose(empty_key), 409);
}

}  // namespace
}  // namespace once::broker
