#include "schema/coding.h"

#include <string>

#include "gtest/gtest.h"

namespace once {
namespace {

TEST(CodingTest, FixedWidthRoundTripIsLittleEndian) {
  std::string buf;
  PutFixed16(&buf, 0x0102);
  PutFixed32(&buf, 0x01020304u);
  PutFixed64(&buf, 0x0102030405060708ull);
  ASSERT_EQ(buf.size(), 14u);
  EXPECT_EQ(buf[0], 0x02);
  EXPECT_EQ(buf[2], 0x04);
  EXPECT_EQ(buf[6], 0x08);
  EXPECT_EQ(DecodeFixed16(buf.data()), 0x0102);
  EXPECT_EQ(DecodeFixed32(buf.data() + 2), 0x01020304u);
  EXPECT_EQ(DecodeFixed64(buf.data() + 6), 0x0102030405060708ull);
}

TEST(CodingTest, ExtremeValuesRoundTrip) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{1} << 63}) {
    std::string buf;
    PutFixed64(&buf, v);
    EXPECT_EQ(DecodeFixed64(buf.data()), v);
  }
  char raw[4];
  EncodeFixed32(raw, 0xdeadbeefu);
  EXPECT_EQ(DecodeFixed32(raw), 0xdeadbeefu);
}

}  // namespace
}  // namespace once
