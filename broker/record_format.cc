#include "broker/record_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "schema/coding.h"
#include "schema/crc32c.h"

namespace once::broker {
namespace {

// Byte positions inside the fixed header.
constexpr size_t kCrcPos = 0;
constexpr size_t kMagicPos = 4;
constexpr size_t kVersionPos = 6;
constexpr size_t kFlagsPos = 7;
constexpr size_t kBodySizePos = 8;
constexpr size_t kOffsetPos = 12;
constexpr size_t kTimestampPos = 20;
static_assert(kTimestampPos + 8 == kFrameHeaderSize);

size_t BodySize(const Record& r) {
  size_t n = 4 + r.key.size() + 4 + r.idempotency_key.size() + 4 + 4 + r.value.size();
  for (const Header& h : r.headers) n += 4 + h.key.size() + 4 + h.value.size();
  return n;
}

char* PutBytes(char* p, absl::string_view s) {
  EncodeFixed32(p, static_cast<uint32_t>(s.size()));
  p += 4;
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

void EncodeFixed64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

// Reads a u32 length and that many bytes from the front of `*in`.
bool GetBytes(absl::string_view* in, absl::string_view* out) {
  if (in->size() < 4) return false;
  uint32_t n = DecodeFixed32(in->data());
  in->remove_prefix(4);
  if (n > in->size()) return false;
  *out = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

}  // namespace

size_t EncodedFrameSize(const Record& record) { return kFrameHeaderSize + BodySize(record); }

absl::Status AppendFrame(const Record& record, int64_t offset, std::string* dst) {
  const size_t body = BodySize(record);
  if (body > kMaxFrameBodySize) {
    return absl::InvalidArgumentError(absl::StrCat("record of ", body,
                                                   " encoded bytes exceeds the frame limit of ",
                                                   kMaxFrameBodySize, " bytes"));
  }
  const size_t start = dst->size();
  dst->resize(start + kFrameHeaderSize + body);
  char* const frame = dst->data() + start;
  frame[kMagicPos] = static_cast<char>(kFrameMagic & 0xff);
  frame[kMagicPos + 1] = static_cast<char>(kFrameMagic >> 8);
  frame[kVersionPos] = static_cast<char>(kFrameVersion);
  frame[kFlagsPos] = static_cast<char>(record.flags);
  EncodeFixed32(frame + kBodySizePos, static_cast<uint32_t>(body));
  EncodeFixed64(frame + kOffsetPos, static_cast<uint64_t>(offset));
  EncodeFixed64(frame + kTimestampPos, static_cast<uint64_t>(record.timestamp_ms));
  char* p = frame + kFrameHeaderSize;
  p = PutBytes(p, record.key);
  p = PutBytes(p, record.idempotency_key);
  EncodeFixed32(p, static_cast<uint32_t>(record.headers.size()));
  p += 4;
  for (const Header& h : record.headers) {
    p = PutBytes(p, h.key);
    p = PutBytes(p, h.value);
  }
  p = PutBytes(p, record.value);
  const uint32_t crc = crc32c::Value(frame + kMagicPos, kFrameHeaderSize - kMagicPos + body);
  EncodeFixed32(frame + kCrcPos, MaskCrc(crc));
  return absl::OkStatus();
}

absl::Status ParseFrameHeader(absl::string_view data, FrameHeader* header) {
  if (data.size() < kFrameHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame header needs ", kFrameHeaderSize, " bytes, got ", data.size()));
  }
  const char* p = data.data();
  const uint16_t magic = DecodeFixed16(p + kMagicPos);
  if (magic != kFrameMagic) {
    return absl::DataLossError(
        absl::StrFormat("bad frame magic 0x%04x (expected 0x%04x)", magic, kFrameMagic));
  }
  header->version = static_cast<uint8_t>(p[kVersionPos]);
  if (header->version != kFrameVersion) {
    return absl::DataLossError(absl::StrCat("unsupported frame version ", header->version,
                                            " (this build reads version ", kFrameVersion, ")"));
  }
  header->body_size = DecodeFixed32(p + kBodySizePos);
  if (header->body_size < kMinFrameBodySize || header->body_size > kMaxFrameBodySize) {
    return absl::DataLossError(absl::StrCat("impossible frame body length ", header->body_size,
                                            " (valid: ", kMinFrameBodySize, "..", kMaxFrameBodySize,
                                            ")"));
  }
  header->masked_crc = DecodeFixed32(p + kCrcPos);
  header->flags = static_cast<uint8_t>(p[kFlagsPos]);
  header->offset = static_cast<int64_t>(DecodeFixed64(p + kOffsetPos));
  header->timestamp_ms = static_cast<int64_t>(DecodeFixed64(p + kTimestampPos));
  return absl::OkStatus();
}

absl::Status VerifyFrameCrc(const FrameHeader& header, absl::string_view frame) {
  if (frame.size() != header.frame_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", header.frame_size(), " bytes checked over ", frame.size()));
  }
  const uint32_t expected = UnmaskCrc(header.masked_crc);
  const uint32_t actual = crc32c::Value(frame.data() + kMagicPos, frame.size() - kMagicPos);
  if (actual != expected) {
    return absl::DataLossError(absl::StrFormat(
        "frame checksum mismatch (stored 0x%08x, computed 0x%08x)", expected, actual));
  }
  return absl::OkStatus();
}

absl::Status DecodeFrameBody(const FrameHeader& header, absl::string_view body, Record* out) {
  if (body.size() != header.body_size) {
    return absl::DataLossError(
        absl::StrCat("frame body is ", body.size(), " bytes, header says ", header.body_size));
  }
  absl::string_view in = body;
  absl::string_view key, idempotency_key, value;
  if (!GetBytes(&in, &key)) return absl::DataLossError("frame key length runs past the body");
  if (!GetBytes(&in, &idempotency_key)) {
    return absl::DataLossError("frame idempotency key length runs past the body");
  }
  if (in.size() < 4) return absl::DataLossError("frame header count runs past the body");
  const uint32_t header_count = DecodeFixed32(in.data());
  in.remove_prefix(4);
  // Each header takes at least 8 bytes: a damaged count is caught here,
  // before it sizes an allocation.
  if (header_count > in.size() / 8) {
    return absl::DataLossError(absl::StrCat("frame header count ", header_count,
                                            " cannot fit in the ", in.size(),
                                            " bytes left of the body"));
  }
  if (out != nullptr) {
    out->headers.clear();
    out->headers.reserve(header_count);
  }
  for (uint32_t i = 0; i < header_count; ++i) {
    absl::string_view hk, hv;
    if (!GetBytes(&in, &hk) || !GetBytes(&in, &hv)) {
      return absl::DataLossError(absl::StrCat("frame header ", i, " runs past the body"));
    }
    if (out != nullptr) out->headers.push_back(Header{std::string(hk), std::string(hv)});
  }
  if (!GetBytes(&in, &value)) return absl::DataLossError("frame value length runs past the body");
  if (!in.empty()) {
    return absl::DataLossError(
        absl::StrCat("frame body has ", in.size(), " bytes after the value"));
  }
  if (out == nullptr) return absl::OkStatus();
  out->offset = header.offset;
  out->timestamp_ms = header.timestamp_ms;
  out->flags = header.flags;
  out->key.assign(key.data(), key.size());
  out->idempotency_key.assign(idempotency_key.data(), idempotency_key.size());
  out->value.assign(value.data(), value.size());
  return absl::OkStatus();
}

absl::StatusOr<size_t> DecodeFrame(absl::string_view data, Record* out) {
  if (data.size() < kFrameHeaderSize) {
    return absl::DataLossError(
        absl::StrCat("incomplete frame header: ", data.size(), " of ", kFrameHeaderSize, " bytes"));
  }
  FrameHeader header;
  absl::Status s = ParseFrameHeader(data, &header);
  if (!s.ok()) return s;
  if (data.size() < header.frame_size()) {
    return absl::DataLossError(
        absl::StrCat("incomplete frame: ", data.size(), " of ", header.frame_size(), " bytes"));
  }
  absl::string_view frame = data.substr(0, header.frame_size());
  s = VerifyFrameCrc(header, frame);
  if (!s.ok()) return s;
  s = DecodeFrameBody(header, frame.substr(kFrameHeaderSize), out);
  if (!s.ok()) return s;
  return header.frame_size();
}

}  // namespace once::broker
