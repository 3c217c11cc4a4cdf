// The effect blob: how a message's staged effects rest in the journal
// (once_txn_messages.effects, schema/participant.sql).
//
//   version   u8      1
//   count     u32     number of effects
//   per effect:
//     command  u32 length + bytes
//     nparams  u32
//     per parameter: tag u8 (0 NULL, 1 INTEGER, 2 REAL, 3 TEXT, 4 BLOB)
//                    INTEGER, REAL: 8 bytes; TEXT, BLOB: u32 length + bytes
//   crc       u32     CRC32C of every byte before it
//
// Integers are little-endian (schema/coding.h). Every length is checked
// against the bytes left before it is used; a bad version, a short blob,
// trailing bytes or a CRC mismatch is kDataLoss naming what is wrong.
#ifndef ONCE_PARTICIPANT_SRC_EFFECT_CODEC_H_
#define ONCE_PARTICIPANT_SRC_EFFECT_CODEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "once/staging.h"

namespace once::participant {

inline constexpr uint8_t kEffectBlobVersion = 1;

std::string EncodeEffects(const std::vector<Effect>& effects);
absl::StatusOr<std::vector<Effect>> DecodeEffects(absl::string_view blob);

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_EFFECT_CODEC_H_
