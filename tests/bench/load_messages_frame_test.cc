// The driver's DOM-free reading of "messages" frames, against frames the
// service writes (coordinator/ws_frames.h) and malformed ones.
#include "tests/bench/load_messages_frame.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/consumer_group.h"
#include "coordinator/ws_frames.h"
#include "gtest/gtest.h"

namespace once::load {
namespace {

struct Seen {
  bool ok;
  std::string value, token;
  uint64_t tag;
};

absl::StatusOr<std::vector<Seen>> Read(absl::string_view frame) {
  std::vector<Seen> seen;
  absl::Status s =
      ForEachDelivery(frame, [&](bool ok, absl::string_view v, absl::string_view t, uint64_t tag) {
        seen.push_back({ok, std::string(v), std::string(t), tag});
      });
  if (!s.ok()) return s;
  return seen;
}

TEST(LoadMessagesFrameTest, ReadsTheServicesFrames) {
  std::vector<broker::Delivery> batch(3);
  for (int i = 0; i < 3; ++i) {
    batch[i].partition = i;
    batch[i].record.offset = 100 + i;
    batch[i].token = absl::StrCat("token-", i);
    batch[i].delivery_count = 1;
  }
  batch[0].record.value = "0000018bcfe56800xxxx";
  batch[1].record.value = "with \"quotes\", a \\ and\nnewline, caf\xC3\xA9";
  batch[2].record.value = std::string(4000, 'v');
  batch[2].record.flags |= broker::kRecordHasKey;
  batch[2].record.key = "k";
  batch[2].record.headers.push_back({"h", "x"});
  const std::string frame = coordinator::MessagesFrame(9, "orders", batch);
  ASSERT_TRUE(LooksLikeMessagesFrame(frame)) << frame.substr(0, 40);
  absl::StatusOr<std::vector<Seen>> seen = Read(frame);
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE((*seen)[i].ok);
    EXPECT_EQ((*seen)[i].value, batch[i].record.value);
    EXPECT_EQ((*seen)[i].token, batch[i].token);
  }
}

TEST(LoadMessagesFrameTest, ReadsTaggedFrames) {
  std::vector<broker::Delivery> batch(2);
  for (int i = 0; i < 2; ++i) {
    batch[i].record.offset = i;
    batch[i].record.value = absl::StrCat("0000018bcfe56800", i);
    batch[i].delivery_count = 1;
  }
  absl::StatusOr<std::vector<Seen>> seen = Read(coordinator::MessagesFrame(3, "t", batch, 77));
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE((*seen)[i].ok);
    EXPECT_EQ((*seen)[i].tag, 77u + i);
    EXPECT_TRUE((*seen)[i].token.empty());
  }
  // A tag that is not a positive integer is no tag.
  seen = Read(R"({"type":"messages","messages":[{"value":"v","delivery_tag":0},)"
              R"({"value":"v","delivery_tag":"1"},{"value":"v","delivery_tag":-3}]})");
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->size(), 3u);
  for (const Seen& s : *seen) EXPECT_FALSE(s.ok);
}

TEST(LoadMessagesFrameTest, FlagsElementsThatAreNotDeliveries) {
  absl::StatusOr<std::vector<Seen>> seen = Read(
      R"({"type":"messages","subscription":1,"messages":[{"value":"v"},3,"s",[1],)"
      R"({"delivery_token":"t"},{"value":"v","delivery_token":"t","headers":{"value":"x"}}]})");
  ASSERT_TRUE(seen.ok()) << seen.status();
  ASSERT_EQ(seen->size(), 6u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE((*seen)[i].ok) << i;
  EXPECT_TRUE((*seen)[5].ok);
  EXPECT_EQ((*seen)[5].value, "v");  // not the header named "value"
}

TEST(LoadMessagesFrameTest, RefusesOtherAndMalformedFrames) {
  EXPECT_FALSE(LooksLikeMessagesFrame(R"({"type":"acked","applied":1})"));
  EXPECT_FALSE(Read(R"({"type":"acked","messages":[]})").ok());
  EXPECT_FALSE(Read(R"({"type":"messages","subscription":1})").ok());
  EXPECT_FALSE(Read(R"({"type":"messages","messages":[{"value":"v")").ok());  // cut short
  EXPECT_FALSE(Read(R"({"type":"messages","messages":[]} trailing)").ok());
  EXPECT_FALSE(Read("").ok());
  EXPECT_FALSE(Read("{\"type\":\"messages\",\"messages\":[{\"value\":\"\xff\"}]}").ok());
  absl::StatusOr<std::vector<Seen>> empty = Read(R"({"type":"messages","messages":[]})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace once::load
