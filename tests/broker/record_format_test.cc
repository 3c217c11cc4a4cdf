#include "broker/record_format.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "broker/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

Record FullRecord() {
  Record r;
  r.offset = 999;  // ignored: the frame takes the offset given to AppendFrame
  r.timestamp_ms = 1'700'000'000'123;
  r.flags = kRecordHasKey | kRecordValueBinary;
  r.key = "user-42";
  r.idempotency_key = "idem-7";
  r.headers = {{"content-type", "application/json"}, {"", ""}, {"trace", std::string("\0\x01", 2)}};
  r.value = std::string("binary\0payload\xff", 15);
  return r;
}

std::string Encode(const Record& r, int64_t offset) {
  std::string out;
  EXPECT_THAT(AppendFrame(r, offset, &out), ::once::testing::IsOk());
  return out;
}

// Recomputes the CRC after a test edits a frame on purpose, so that the
// check under test is the one after the CRC.
void Reseal(std::string* frame) {
  EncodeFixed32(frame->data(), MaskCrc(crc32c::Value(frame->data() + 4, frame->size() - 4)));
}

TEST(RecordFormatTest, RoundTripsEveryField) {
  const Record in = FullRecord();
  const std::string frame = Encode(in, 77);
  EXPECT_EQ(frame.size(), EncodedFrameSize(in));
  Record out;
  ONCE_ASSERT_OK_AND_ASSIGN(size_t n, DecodeFrame(frame, &out));
  EXPECT_EQ(n, frame.size());
  Record want = in;
  want.offset = 77;
  EXPECT_EQ(out, want);
}

TEST(RecordFormatTest, RoundTripsAnEmptyRecord) {
  Record in;
  const std::string frame = Encode(in, 0);
  EXPECT_EQ(frame.size(), kFrameHeaderSize + kMinFrameBodySize);
  Record out;
  out.key = "stale";
  out.headers = {{"a", "b"}};
  ONCE_ASSERT_OK_AND_ASSIGN(size_t n, DecodeFrame(frame, &out));
  EXPECT_EQ(n, frame.size());
  EXPECT_EQ(out, in);
}

TEST(RecordFormatTest, HeaderFieldsSitWhereTheDocumentSays) {
  const Record in = FullRecord();
  const std::string frame = Encode(in, 0x0102030405060708);
  EXPECT_EQ(frame[4], 'O');
  EXPECT_EQ(frame[5], 'N');
  EXPECT_EQ(frame[6], 1);  // version
  EXPECT_EQ(static_cast<uint8_t>(frame[7]), in.flags);
  EXPECT_EQ(DecodeFixed32(frame.data() + 8), frame.size() - kFrameHeaderSize);
  EXPECT_EQ(DecodeFixed64(frame.data() + 12), 0x0102030405060708u);
  EXPECT_EQ(static_cast<int64_t>(DecodeFixed64(frame.data() + 20)), in.timestamp_ms);
  EXPECT_EQ(UnmaskCrc(DecodeFixed32(frame.data())),
            crc32c::Value(frame.data() + 4, frame.size() - 4));
  // The body starts with the key.
  EXPECT_EQ(DecodeFixed32(frame.data() + 28), in.key.size());
  EXPECT_EQ(frame.substr(32, in.key.size()), in.key);
}

TEST(RecordFormatTest, ConsecutiveFramesDecodeOneByOne) {
  std::string data;
  Record a = FullRecord();
  Record b;
  b.value = "second";
  ONCE_ASSERT_OK(AppendFrame(a, 5, &data));
  ONCE_ASSERT_OK(AppendFrame(b, 6, &data));
  Record out;
  ONCE_ASSERT_OK_AND_ASSIGN(size_t first, DecodeFrame(data, &out));
  EXPECT_EQ(out.offset, 5);
  ONCE_ASSERT_OK_AND_ASSIGN(size_t second,
                            DecodeFrame(absl::string_view(data).substr(first), &out));
  EXPECT_EQ(out.offset, 6);
  EXPECT_EQ(out.value, "second");
  EXPECT_EQ(first + second, data.size());
}

TEST(RecordFormatTest, MaskIsReversible) {
  for (uint32_t v : {0u, 1u, 0xffffffffu, 0xa282ead8u, 0x12345678u}) {
    EXPECT_EQ(UnmaskCrc(MaskCrc(v)), v);
    EXPECT_NE(MaskCrc(v), v);
  }
}

TEST(RecordFormatTest, EverySingleBitFlipIsDetected) {
  const std::string frame = Encode(FullRecord(), 3);
  for (size_t byte = 0; byte < frame.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = frame;
      damaged[byte] = static_cast<char>(damaged[byte] ^ (1 << bit));
      Record out;
      EXPECT_THAT(DecodeFrame(damaged, &out), StatusIs(absl::StatusCode::kDataLoss))
          << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(RecordFormatTest, EveryTruncationIsDetected) {
  const std::string frame = Encode(FullRecord(), 3);
  for (size_t len = 0; len < frame.size(); ++len) {
    Record out;
    EXPECT_THAT(DecodeFrame(absl::string_view(frame).substr(0, len), &out),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("incomplete")))
        << "length " << len;
  }
}

TEST(RecordFormatTest, ImpossibleBodyLengthIsRejectedBeforeUse) {
  std::string frame = Encode(FullRecord(), 3);
  FrameHeader header;
  for (uint32_t bad : {0u, kMinFrameBodySize - 1, kMaxFrameBodySize + 1, 0xffffffffu}) {
    EncodeFixed32(frame.data() + 8, bad);
    EXPECT_THAT(ParseFrameHeader(frame, &header),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("impossible frame body length")))
        << bad;
  }
}

TEST(RecordFormatTest, BadMagicAndUnknownVersionAreRejected) {
  FrameHeader header;
  std::string frame = Encode(FullRecord(), 3);
  frame[4] = 'X';
  EXPECT_THAT(ParseFrameHeader(frame, &header),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
  frame = Encode(FullRecord(), 3);
  frame[6] = 2;
  EXPECT_THAT(ParseFrameHeader(frame, &header),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version 2")));
  EXPECT_THAT(ParseFrameHeader("short", &header), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RecordFormatTest, InnerLengthsAreCheckedEvenWithAGoodCrc) {
  // A key length that runs past the body.
  std::string frame = Encode(FullRecord(), 3);
  EncodeFixed32(frame.data() + kFrameHeaderSize, 1 << 20);
  Reseal(&frame);
  Record out;
  EXPECT_THAT(DecodeFrame(frame, &out),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key length runs past")));

  // A header count that could not fit: refused before any allocation.
  Record r;
  r.value = "v";
  frame = Encode(r, 3);
  EncodeFixed32(frame.data() + kFrameHeaderSize + 8, 0xfffffff0u);
  Reseal(&frame);
  EXPECT_THAT(DecodeFrame(frame, &out),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("header count")));

  // Bytes left over after the value.
  frame = Encode(r, 3);
  EncodeFixed32(frame.data() + kFrameHeaderSize + 12, 0);  // value length 1 -> 0
  Reseal(&frame);
  EXPECT_THAT(DecodeFrame(frame, &out),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("after the value")));
}

TEST(RecordFormatTest, ValidateOnlyDecodeCopiesNothing) {
  const std::string frame = Encode(FullRecord(), 3);
  FrameHeader header;
  ONCE_ASSERT_OK(ParseFrameHeader(frame, &header));
  ONCE_EXPECT_OK(VerifyFrameCrc(header, frame));
  ONCE_EXPECT_OK(
      DecodeFrameBody(header, absl::string_view(frame).substr(kFrameHeaderSize), nullptr));
}

}  // namespace
}  // namespace once::broker
