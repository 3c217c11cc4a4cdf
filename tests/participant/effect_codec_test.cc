#include "participant/src/effect_codec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "tests/testing/status_matchers.h"

namespace once::participant {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<Effect> Sample() {
  return {
      Effect{"INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
             {std::monostate{}, int64_t{-42}, 2.5, std::string("text\0x", 6), Blob{"\x01\x02"}}},
      Effect{"DELETE FROM t", {}}};
}

// Re-seals a blob whose body the test changed, so that only the change is
// wrong (not the CRC).
std::string Reseal(std::string body) {
  PutFixed32(&body, crc32c::Value(body));
  return body;
}

TEST(EffectCodecTest, RoundTripsEveryParameterType) {
  const std::vector<Effect> effects = Sample();
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Effect> back, DecodeEffects(EncodeEffects(effects)));
  EXPECT_EQ(back, effects);
}

TEST(EffectCodecTest, RoundTripsNoEffects) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<Effect> back, DecodeEffects(EncodeEffects({})));
  EXPECT_TRUE(back.empty());
}

TEST(EffectCodecTest, FlippedByteIsACrcMismatch) {
  std::string blob = EncodeEffects(Sample());
  blob[10] ^= 0x40;
  EXPECT_THAT(DecodeEffects(blob), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("CRC")));
}

TEST(EffectCodecTest, TooShortBlob) {
  EXPECT_THAT(DecodeEffects("abc"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shorter")));
}

TEST(EffectCodecTest, UnknownVersion) {
  std::string blob = EncodeEffects(Sample());
  std::string body = blob.substr(0, blob.size() - 4);
  body[0] = 9;
  EXPECT_THAT(DecodeEffects(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version 9")));
}

TEST(EffectCodecTest, TruncatedBodyWithValidCrc) {
  std::string blob = EncodeEffects(Sample());
  std::string body = blob.substr(0, blob.size() - 4 - 3);
  EXPECT_THAT(DecodeEffects(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(EffectCodecTest, TrailingBytesWithValidCrc) {
  std::string blob = EncodeEffects(Sample());
  std::string body = blob.substr(0, blob.size() - 4) + "zz";
  EXPECT_THAT(DecodeEffects(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("trailing")));
}

TEST(EffectCodecTest, HugeCountIsRefusedBeforeAllocating) {
  std::string body(1, static_cast<char>(kEffectBlobVersion));
  PutFixed32(&body, 0xFFFFFFFFu);
  EXPECT_THAT(DecodeEffects(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("cannot fit")));
}

TEST(EffectCodecTest, UnknownParameterTag) {
  std::string body(1, static_cast<char>(kEffectBlobVersion));
  PutFixed32(&body, 1);
  PutFixed32(&body, 1);
  body += "x";
  PutFixed32(&body, 1);
  body.push_back(7);
  EXPECT_THAT(DecodeEffects(Reseal(body)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tag 7")));
}

}  // namespace
}  // namespace once::participant
