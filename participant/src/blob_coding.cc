#include "participant/src/blob_coding.h"

#include "absl/strings/str_cat.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "schema/status_macros.h"

namespace once::participant {

void PutBytes(std::string* dst, absl::string_view bytes) {
  PutFixed32(dst, static_cast<uint32_t>(bytes.size()));
  dst->append(bytes.data(), bytes.size());
}

void SealBlob(std::string* blob) { PutFixed32(blob, crc32c::Value(*blob)); }

absl::StatusOr<absl::string_view> OpenSealedBlob(absl::string_view blob, absl::string_view what,
                                                 uint8_t version) {
  if (blob.size() < 1 + 4 + 4) {
    return absl::DataLossError(
        absl::StrCat(what, ": ", blob.size(), " bytes, shorter than the smallest (9)"));
  }
  absl::string_view body = blob.substr(0, blob.size() - 4);
  const uint32_t stored = DecodeFixed32(blob.data() + body.size());
  const uint32_t actual = crc32c::Value(body);
  if (stored != actual) {
    return absl::DataLossError(
        absl::StrCat(what, ": CRC mismatch (stored ", stored, ", computed ", actual, ")"));
  }
  const uint8_t found = static_cast<uint8_t>(body[0]);
  if (found != version) {
    return absl::DataLossError(
        absl::StrCat(what, ": unsupported version ", found, " (this build reads ", version, ")"));
  }
  body.remove_prefix(1);
  return body;
}

absl::StatusOr<absl::string_view> BlobReader::Take(size_t n, absl::string_view field) {
  if (data_.size() < n) {
    return absl::DataLossError(absl::StrCat(what_, ": truncated ", field, " (", n,
                                            " bytes needed, ", data_.size(), " left)"));
  }
  const absl::string_view out = data_.substr(0, n);
  data_.remove_prefix(n);
  return out;
}

absl::StatusOr<uint8_t> BlobReader::U8(absl::string_view field) {
  ONCE_ASSIGN_OR_RETURN(const absl::string_view b, Take(1, field));
  return static_cast<uint8_t>(b[0]);
}

absl::StatusOr<uint32_t> BlobReader::U32(absl::string_view field) {
  ONCE_ASSIGN_OR_RETURN(const absl::string_view b, Take(4, field));
  return DecodeFixed32(b.data());
}

absl::StatusOr<uint64_t> BlobReader::U64(absl::string_view field) {
  ONCE_ASSIGN_OR_RETURN(const absl::string_view b, Take(8, field));
  return DecodeFixed64(b.data());
}

absl::StatusOr<absl::string_view> BlobReader::Bytes(absl::string_view field) {
  ONCE_ASSIGN_OR_RETURN(const uint32_t n, U32(field));
  return Take(n, field);
}

}  // namespace once::participant
