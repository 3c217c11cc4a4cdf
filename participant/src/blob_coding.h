// What the journal's blob codecs (participant/src/effect_codec.h and
// participant/src/staged_codec.h) share: length-prefixed byte strings, a
// version byte at the front and a CRC32C of everything before it at the
// end, and a reader that checks every length against the bytes left. Each
// codec names its blob (`what`: "effect blob", "staged blob") in the
// kDataLoss errors.
#ifndef ONCE_PARTICIPANT_SRC_BLOB_CODING_H_
#define ONCE_PARTICIPANT_SRC_BLOB_CODING_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::participant {

// u32 length + bytes.
void PutBytes(std::string* dst, absl::string_view bytes);
// Appends the CRC32C of every byte of `blob` so far.
void SealBlob(std::string* blob);

// Checks a sealed blob (at least a version byte, a u32 count and the CRC;
// the CRC; the version) and returns what lies between the version byte and
// the CRC.
absl::StatusOr<absl::string_view> OpenSealedBlob(absl::string_view blob, absl::string_view what,
                                                 uint8_t version);

// Reads a blob's body front to back; every read checks the bytes left.
class BlobReader {
 public:
  BlobReader(absl::string_view data, absl::string_view what) : data_(data), what_(what) {}
  size_t left() const { return data_.size(); }

  absl::StatusOr<uint8_t> U8(absl::string_view field);
  absl::StatusOr<uint32_t> U32(absl::string_view field);
  absl::StatusOr<uint64_t> U64(absl::string_view field);
  // u32 length + bytes; a view into the blob.
  absl::StatusOr<absl::string_view> Bytes(absl::string_view field);

 private:
  absl::StatusOr<absl::string_view> Take(size_t n, absl::string_view field);

  absl::string_view data_;
  const absl::string_view what_;
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_BLOB_CODING_H_
