#include "participant/src/staged_codec.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "participant/src/blob_coding.h"
#include "participant/src/effect_codec.h"
#include "schema/coding.h"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

// The smallest message: an empty id, the flag and an empty effects length.
constexpr size_t kMinMessageBytes = 4 + 1 + 4;

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
  SealBlob(&out);
  return out;
}

absl::StatusOr<std::vector<StagedMessage>> DecodeStaged(absl::string_view blob) {
  ONCE_ASSIGN_OR_RETURN(const absl::string_view body,
                        OpenSealedBlob(blob, "staged blob", kStagedBlobVersion));
  BlobReader r(body, "staged blob");
  ONCE_ASSIGN_OR_RETURN(const uint32_t count, r.U32("message count"));
  // A count beyond what the bytes can hold is damage, not a reason to
  // reserve gigabytes.
  if (count > r.left() / kMinMessageBytes) {
    return absl::DataLossError(
        absl::StrCat("staged blob: ", count, " messages cannot fit in ", r.left(), " bytes"));
  }
  std::vector<StagedMessage> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    StagedMessage m;
    ONCE_ASSIGN_OR_RETURN(const absl::string_view id, r.Bytes("message id"));
    m.message_id = std::string(id);
    ONCE_ASSIGN_OR_RETURN(const uint8_t flag, r.U8("skipped flag"));
    if (flag > 1) {
      return absl::DataLossError(absl::StrCat("staged blob: message ", m.message_id,
                                              ": skipped flag ", static_cast<int>(flag)));
    }
    m.skipped = flag == 1;
    ONCE_ASSIGN_OR_RETURN(const absl::string_view effects, r.Bytes("effects"));
    absl::StatusOr<std::vector<Effect>> decoded = DecodeEffects(effects);
    if (!decoded.ok()) {
      return absl::DataLossError(
          absl::StrCat("staged blob: message ", m.message_id, ": ", decoded.status().message()));
    }
    m.effects = std::move(decoded).value();
    out.push_back(std::move(m));
  }
  if (r.left() != 0) {
    return absl::DataLossError(
        absl::StrCat("staged blob: ", r.left(), " trailing bytes after ", count, " messages"));
  }
  return out;
}

}  // namespace once::participant
