// The frame of one record in a segment file: a fixed header with a CRC32C,
// then the record's fields. The exact byte layout, and how recovery reads it,
// is documented in broker/record_format.md; keep the two in step.
#ifndef ONCE_BROKER_RECORD_FORMAT_H_
#define ONCE_BROKER_RECORD_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/record.h"

namespace once::broker {

// Stored on disk: never change these for version 1.
inline constexpr uint16_t kFrameMagic = 0x4E4F;  // the bytes 'O' 'N'
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 28;
// Four u32 lengths/counts (key, idempotency key, header count, value).
inline constexpr uint32_t kMinFrameBodySize = 16;
// Far above any record a topic accepts (TopicConfig caps the payload at
// 64 MiB), low enough that a damaged length never makes a reader allocate
// without bound.
inline constexpr uint32_t kMaxFrameBodySize = 256u << 20;

// The fixed part of a frame, as ParseFrameHeader found it.
struct FrameHeader {
  uint32_t masked_crc = 0;
  uint8_t version = 0;
  uint8_t flags = 0;
  uint32_t body_size = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;

  size_t frame_size() const { return kFrameHeaderSize + body_size; }
};

// LevelDB's CRC masking: a CRC stored next to data that may itself contain
// CRCs (a record whose payload is a frame) is rotated and offset so that
// computing CRCs of CRCs does not produce trivial patterns.
inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

// Bytes the frame of `record` takes (header and body).
size_t EncodedFrameSize(const Record& record);

// Appends the frame of `record`, with `offset` in place of record.offset, to
// `dst`. kInvalidArgument (and nothing appended) when the body would exceed
// kMaxFrameBodySize.
absl::Status AppendFrame(const Record& record, int64_t offset, std::string* dst);

// Parses the fixed header at the start of `data` (which must hold at least
// kFrameHeaderSize bytes; kInvalidArgument otherwise). kDataLoss for a wrong
// magic, an unknown version or a body size outside
// [kMinFrameBodySize, kMaxFrameBodySize]. The CRC is not checked here.
absl::Status ParseFrameHeader(absl::string_view data, FrameHeader* header);

// Checks the CRC of `frame`, which must be exactly header.frame_size() bytes
// starting at the header. kDataLoss on mismatch.
absl::Status VerifyFrameCrc(const FrameHeader& header, absl::string_view frame);

// Decodes the body (the header.body_size bytes after the header) into `out`,
// taking offset, timestamp and flags from `header`. Every length is checked
// against the bytes left; kDataLoss when they disagree. Does not check the CRC.
// With `out` null the body is only validated (nothing is copied).
absl::Status DecodeFrameBody(const FrameHeader& header, absl::string_view body, Record* out);

// Parses, verifies and decodes the complete frame at the start of `data` and
// returns its size. kDataLoss when it is damaged or `data` ends inside it.
absl::StatusOr<size_t> DecodeFrame(absl::string_view data, Record* out);

}  // namespace once::broker

#endif  // ONCE_BROKER_RECORD_FORMAT_H_
