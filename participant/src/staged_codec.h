// The staged blob: a prepared transaction's messages as they rest in the
// journal, all in one row (once_txn_staged.staged, schema/participant.sql).
// One row per transaction instead of one per message: a transaction of a
// thousand messages is one INSERT at PREPARE and one DELETE at COMMIT,
// where rows per message cost the journal a third of the consumer's
// instructions.
//
//   version   u8      1
//   count     u32     number of messages
//   per message, in the PREPARE's order:
//     message_id  u32 length + bytes
//     skipped     u8      0 or 1 (1: already committed when prepared)
//     effects     u32 length + an effect blob (participant/src/effect_codec.h,
//                 with its own version and CRC)
//   crc       u32     CRC32C of every byte before it
//
// Integers are little-endian (schema/coding.h). Every length is checked
// against the bytes left before it is used; a bad version, a short blob,
// trailing bytes, a CRC mismatch or a damaged effect blob is kDataLoss
// naming what is wrong.
#ifndef ONCE_PARTICIPANT_SRC_STAGED_CODEC_H_
#define ONCE_PARTICIPANT_SRC_STAGED_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "once/resource.h"

namespace once::participant {

inline constexpr uint8_t kStagedBlobVersion = 1;

std::string EncodeStaged(const std::vector<StagedMessage>& messages);
absl::StatusOr<std::vector<StagedMessage>> DecodeStaged(absl::string_view blob);

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_STAGED_CODEC_H_
