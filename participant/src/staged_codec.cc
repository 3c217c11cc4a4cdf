#include "participant/src/staged_codec.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "participant/src/effect_codec.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

// The smallest message: an empty id, the flag and an empty effects length.
constexpr size_t kMinMessageBytes = 4 + 1 + 4;

void PutBytes(std::string* dst, absl::string_view bytes) {
  PutFixed32(dst, static_cast<uint32_t>(bytes.size()));
  dst->append(bytes.data(), bytes.size());
}

// Takes `n` bytes off the front of `data` into `out`, or fails naming
// `what` when fewer are left.
absl::Status Take(absl::string_view* data, size_t n, absl::string_view what,
                  absl::string_view* out) {
  if (data->size() < n) {
    return absl::DataLossError(absl::StrCat("staged blob: truncated ", what, " (", n,
                                            " bytes needed, ", data->size(), " left)"));
  }
  *out = data->substr(0, n);
  data->remove_prefix(n);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> TakeU32(absl::string_view* data, absl::string_view what) {
  absl::string_view b;
  ONCE_RETURN_IF_ERROR(Take(data, 4, what, &b));
  return DecodeFixed32(b.data());
}

absl::StatusOr<absl::string_view> TakeBytes(absl::string_view* data, absl::string_view what) {
  ONCE_ASSIGN_OR_RETURN(const uint32_t n, TakeU32(data, what));
  absl::string_view b;
  ONCE_RETURN_IF_ERROR(Take(data, n, what, &b));
  return b;
}

}  // namespace

std::string EncodeStaged(const std::vector<StagedMessage>& messages) {
  std::string out;
  out.push_back(static_cast<char>(kStagedBlobVersion));
  PutFixed32(&out, static_cast<uint32_t>(messages.size()));
  for (const StagedMessage& m : messages) {
    PutBytes(&out, m.message_id);
    out.push_back(m.skipped ? 1 : 0);
    PutBytes(&out, EncodeEffects(m.effects));
  }
  PutFixed32(&out, crc32c::Value(out));
  return out;
}

absl::StatusOr<std::vector<StagedMessage>> DecodeStaged(absl::string_view blob) {
  if (blob.size() < 1 + 4 + 4) {
    return absl::DataLossError(
        absl::StrCat("staged blob: ", blob.size(), " bytes, shorter than the smallest (9)"));
  }
  absl::string_view body = blob.substr(0, blob.size() - 4);
  const uint32_t stored = DecodeFixed32(blob.data() + body.size());
  const uint32_t actual = crc32c::Value(body);
  if (stored != actual) {
    return absl::DataLossError(
        absl::StrCat("staged blob: CRC mismatch (stored ", stored, ", computed ", actual, ")"));
  }
  const uint8_t version = static_cast<uint8_t>(body[0]);
  body.remove_prefix(1);
  if (version != kStagedBlobVersion) {
    return absl::DataLossError(absl::StrCat("staged blob: unsupported version ", version,
                                            " (this build reads ", kStagedBlobVersion, ")"));
  }
  ONCE_ASSIGN_OR_RETURN(const uint32_t count, TakeU32(&body, "message count"));
  // A count beyond what the bytes can hold is damage, not a reason to
  // reserve gigabytes.
  if (count > body.size() / kMinMessageBytes) {
    return absl::DataLossError(
        absl::StrCat("staged blob: ", count, " messages cannot fit in ", body.size(), " bytes"));
  }
  std::vector<StagedMessage> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    StagedMessage m;
    ONCE_ASSIGN_OR_RETURN(const absl::string_view id, TakeBytes(&body, "message id"));
    m.message_id = std::string(id);
    absl::string_view flag;
    ONCE_RETURN_IF_ERROR(Take(&body, 1, "skipped flag", &flag));
    if (flag[0] != 0 && flag[0] != 1) {
      return absl::DataLossError(absl::StrCat("staged blob: message ", m.message_id,
                                              ": skipped flag ", static_cast<int>(flag[0])));
    }
    m.skipped = flag[0] == 1;
    ONCE_ASSIGN_OR_RETURN(const absl::string_view effects, TakeBytes(&body, "effects"));
    absl::StatusOr<std::vector<Effect>> decoded = DecodeEffects(effects);
    if (!decoded.ok()) {
      return absl::DataLossError(
          absl::StrCat("staged blob: message ", m.message_id, ": ", decoded.status().message()));
    }
    m.effects = std::move(decoded).value();
    out.push_back(std::move(m));
  }
  if (!body.empty()) {
    return absl::DataLossError(
        absl::StrCat("staged blob: ", body.size(), " trailing bytes after ", count, " messages"));
  }
  return out;
}

}  // namespace once::participant
