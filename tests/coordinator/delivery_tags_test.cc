#include "coordinator/delivery_tags.h"

#include <vector>

#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

broker::DeliveryToken Handle(int64_t offset) {
  broker::DeliveryToken t;
  t.offset = offset;
  t.sequence = static_cast<uint64_t>(offset) + 100;
  return t;
}

TEST(DeliveryTagsTest, TagsCountUpFromOneAndEachIsTakenOnce) {
  DeliveryTags tags;
  EXPECT_EQ(tags.next_tag(), 1u);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(tags.Add(Handle(i)), static_cast<uint64_t>(i + 1));
  EXPECT_EQ(tags.size(), 5u);
  std::optional<broker::DeliveryToken> h = tags.Take(3);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(*h, Handle(2));
  EXPECT_FALSE(tags.Take(3).has_value());  // taken
  EXPECT_FALSE(tags.Take(0).has_value());
  EXPECT_FALSE(tags.Take(6).has_value());  // never handed out
  EXPECT_EQ(tags.size(), 4u);
  EXPECT_EQ(tags.next_tag(), 6u);
}

TEST(DeliveryTagsTest, TakeThroughTakesWhatIsLeftUpToTheTagInOrder) {
  DeliveryTags tags;
  for (int64_t i = 0; i < 6; ++i) tags.Add(Handle(i));
  ASSERT_TRUE(tags.Take(2).has_value());
  std::vector<DeliveryTags::Entry> taken;
  tags.TakeThrough(4, &taken);
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].first, 1u);
  EXPECT_EQ(taken[1].first, 3u);
  EXPECT_EQ(taken[2].first, 4u);
  EXPECT_EQ(taken[2].second, Handle(3));
  taken.clear();
  tags.TakeThrough(4, &taken);  // nothing left there
  EXPECT_TRUE(taken.empty());
  // What is left goes with TakeAll; new tags go on counting.
  std::vector<broker::DeliveryToken> rest = tags.TakeAll();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0], Handle(4));
  EXPECT_EQ(rest[1], Handle(5));
  EXPECT_EQ(tags.size(), 0u);
  EXPECT_EQ(tags.Add(Handle(9)), 7u);
}

// Only what is outstanding is held: a long run of acked deliveries behind
// one unacked tag leaves one entry, not the run.
TEST(DeliveryTagsTest, HoldsOnlyOutstandingTags) {
  DeliveryTags tags;
  tags.Add(Handle(0));
  for (int64_t i = 1; i <= 10'000; ++i) {
    const uint64_t tag = tags.Add(Handle(i));
    ASSERT_TRUE(tags.Take(tag).has_value());
  }
  EXPECT_EQ(tags.size(), 1u);
}

}  // namespace
}  // namespace once::coordinator
