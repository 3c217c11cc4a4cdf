#include "schema/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace once::crc32c {
namespace {

// Test vectors from RFC 3720, appendix B.4.
TEST(Crc32cTest, MatchesRfc3720Vectors) {
  std::string zeros(32, '\0');
  EXPECT_EQ(Value(zeros), 0x8a9136aau);
  std::string ones(32, '\xff');
  EXPECT_EQ(Value(ones), 0x62a8ab43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(Value(ascending), 0x46dd794eu);
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) descending[i] = static_cast<char>(31 - i);
  EXPECT_EQ(Value(descending), 0x113fdb5cu);
}

TEST(Crc32cTest, CheckValueOfDigits) { EXPECT_EQ(Value("123456789"), 0xe3069283u); }

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::string data = "hello, exactly-once world: a payment captured once";
  const uint32_t whole = Value(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    uint32_t crc = Extend(0, data.data(), split);
    crc = Extend(crc, data.data() + split, data.size() - split);
    EXPECT_EQ(crc, whole) << "split at " << split;
  }
}

TEST(Crc32cTest, DetectsSingleBitFlip) {
  std::string data(100, 'x');
  const uint32_t before = Value(data);
  data[50] ^= 0x04;
  EXPECT_NE(Value(data), before);
}

}  // namespace
}  // namespace once::crc32c
