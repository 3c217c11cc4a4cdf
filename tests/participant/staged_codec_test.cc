#include "participant/src/staged_codec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/src/effect_codec.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "tests/testing/status_matchers.h"

namespace once::participant {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<StagedMessage> Sample() {
  StagedMessage paid;
  paid.message_id = "payments/0/7";
  paid.effects = {Effect{"INSERT INTO t VALUES (?1, ?2)", {std::string("alice"), int64_t{250}}},
                  Effect{"UPDATE u SET n = n + 1", {}}};
  StagedMessage seen;
  seen.message_id = "payments/1/3";
  seen.skipped = true;
  StagedMessage odd;
  odd.message_id = std::string("id\0with nul", 11);
  odd.effects = {Effect{"INSERT INTO b VALUES (?1)", {Blob{std::string("\x00\xff", 2)}}}};
  return {paid, seen, odd};
}

// The body of a blob (without its CRC), and a blob re-sealed around a body
// the test changed, so that only the change is wrong.
std::string Body(const std::string& blob) { return blob.substr(0, blob.size() - 4); }
std::string Reseal(std::string body) {
  PutFixed32(&body, crc32c::Value(body));
  return body;
}

TEST(StagedCodecTest, RoundTripsIdsFlagsAndEffectsInOrder) {
  const std::vector<StagedMessage> messages = Sample();
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StagedMessage> back, DecodeStaged(EncodeStaged(messages)));
  ASSERT_EQ(back.size(), messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(back[i].message_id, messages[i].message_id) << i;
    EXPECT_EQ(back[i].skipped, messages[i].skipped) << i;
    EXPECT_EQ(back[i].effects, messages[i].effects) << i;
  }
}

TEST(StagedCodecTest, RoundTripsNoMessages) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StagedMessage> back, DecodeStaged(EncodeStaged({})));
  EXPECT_TRUE(back.empty());
}

TEST(StagedCodecTest, FlippedByteIsACrcMismatch) {
  std::string blob = EncodeStaged(Sample());
  blob[12] ^= 0x40;
  EXPECT_THAT(DecodeStaged(blob), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("CRC")));
}

TEST(StagedCodecTest, TooShortBlob) {
  EXPECT_THAT(DecodeStaged("abcd"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shorter")));
  EXPECT_THAT(DecodeStaged(""), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shorter")));
}

TEST(StagedCodecTest, UnknownVersion) {
  std::string body = Body(EncodeStaged(Sample()));
  body[0] = 7;
  EXPECT_THAT(DecodeStaged(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version 7")));
}

TEST(StagedCodecTest, TruncatedBodyWithValidCrc) {
  const std::string body = Body(EncodeStaged(Sample()));
  // Cut anywhere inside the messages: never a crash, always named damage.
  for (size_t cut = 5; cut < body.size(); cut += 7) {
    EXPECT_THAT(DecodeStaged(Reseal(body.substr(0, cut))), StatusIs(absl::StatusCode::kDataLoss))
        << "cut at " << cut;
  }
}

TEST(StagedCodecTest, TrailingBytesWithValidCrc) {
  const std::string body = Body(EncodeStaged(Sample())) + "zz";
  EXPECT_THAT(DecodeStaged(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("trailing")));
}

TEST(StagedCodecTest, HugeCountIsRefusedBeforeAllocating) {
  std::string body(1, static_cast<char>(kStagedBlobVersion));
  PutFixed32(&body, 0xFFFFFFFFu);
  EXPECT_THAT(DecodeStaged(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("cannot fit")));
}

TEST(StagedCodecTest, SkippedFlagOtherThanZeroOrOneIsDamage) {
  StagedMessage m;
  m.message_id = "x";
  std::string body = Body(EncodeStaged({m}));
  body[1 + 4 + 4 + 1] = 2;  // version, count, id length, id: then the flag
  EXPECT_THAT(DecodeStaged(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("skipped flag 2")));
}

TEST(StagedCodecTest, DamagedEffectBlobInsideNamesTheMessage) {
  StagedMessage m;
  m.message_id = "t/0/9";
  m.effects = {Effect{"DELETE FROM t", {}}};
  std::string body = Body(EncodeStaged({m}));
  body[body.size() - 1] ^= 0x01;  // the last byte of the effect blob's own CRC
  EXPECT_THAT(DecodeStaged(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("message t/0/9: effect blob")));
}

}  // namespace
}  // namespace once::participant
