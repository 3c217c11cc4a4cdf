#include "participant/src/effect_codec.h"

#include <cstring>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "participant/src/blob_coding.h"
#include "schema/coding.h"
#include "schema/status_macros.h"

namespace once::participant {
namespace {

enum Tag : uint8_t { kNull = 0, kInteger = 1, kReal = 2, kText = 3, kBlob = 4 };

// Writes through `out` rather than returning StatusOr<Value>: GCC 12 with
// the sanitizers warns (falsely) about a variant moved out of a StatusOr.
absl::Status DecodeValue(BlobReader& r, Value* out) {
  ONCE_ASSIGN_OR_RETURN(const uint8_t tag, r.U8("parameter tag"));
  switch (tag) {
    case kNull:
      out->emplace<std::monostate>();
      return absl::OkStatus();
    case kInteger: {
      ONCE_ASSIGN_OR_RETURN(const uint64_t v, r.U64("integer parameter"));
      out->emplace<int64_t>(static_cast<int64_t>(v));
      return absl::OkStatus();
    }
    case kReal: {
      ONCE_ASSIGN_OR_RETURN(const uint64_t bits, r.U64("real parameter"));
      double d;
      std::memcpy(&d, &bits, sizeof d);
      out->emplace<double>(d);
      return absl::OkStatus();
    }
    case kText: {
      ONCE_ASSIGN_OR_RETURN(const absl::string_view s, r.Bytes("text parameter"));
      out->emplace<std::string>(s);
      return absl::OkStatus();
    }
    case kBlob: {
      ONCE_ASSIGN_OR_RETURN(const absl::string_view s, r.Bytes("blob parameter"));
      out->emplace<Blob>(Blob{std::string(s)});
      return absl::OkStatus();
    }
    default:
      return absl::DataLossError(absl::StrCat("effect blob: unknown parameter tag ", tag));
  }
}

}  // namespace

std::string EncodeEffects(const std::vector<Effect>& effects) {
  std::string out;
  out.push_back(static_cast<char>(kEffectBlobVersion));
  PutFixed32(&out, static_cast<uint32_t>(effects.size()));
  for (const Effect& e : effects) {
    PutBytes(&out, e.command);
    PutFixed32(&out, static_cast<uint32_t>(e.params.size()));
    for (const Value& v : e.params) {
      std::visit(
          [&out](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              out.push_back(static_cast<char>(kNull));
            } else if constexpr (std::is_same_v<T, int64_t>) {
              out.push_back(static_cast<char>(kInteger));
              PutFixed64(&out, static_cast<uint64_t>(x));
            } else if constexpr (std::is_same_v<T, double>) {
              out.push_back(static_cast<char>(kReal));
              uint64_t bits;
              std::memcpy(&bits, &x, sizeof bits);
              PutFixed64(&out, bits);
            } else if constexpr (std::is_same_v<T, std::string>) {
              out.push_back(static_cast<char>(kText));
              PutBytes(&out, x);
            } else {
              static_assert(std::is_same_v<T, Blob>);
              out.push_back(static_cast<char>(kBlob));
              PutBytes(&out, x.bytes);
            }
          },
          v);
    }
  }
  SealBlob(&out);
  return out;
}

absl::StatusOr<std::vector<Effect>> DecodeEffects(absl::string_view blob) {
  ONCE_ASSIGN_OR_RETURN(const absl::string_view body,
                        OpenSealedBlob(blob, "effect blob", kEffectBlobVersion));
  BlobReader r(body, "effect blob");
  ONCE_ASSIGN_OR_RETURN(const uint32_t count, r.U32("effect count"));
  std::vector<Effect> effects;
  // Each effect takes at least 8 bytes: a count beyond that is damage, not
  // a reason to reserve gigabytes.
  if (count > r.left() / 8) {
    return absl::DataLossError(
        absl::StrCat("effect blob: ", count, " effects cannot fit in ", r.left(), " bytes"));
  }
  effects.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    Effect e;
    ONCE_ASSIGN_OR_RETURN(const absl::string_view command, r.Bytes("command"));
    e.command = std::string(command);
    ONCE_ASSIGN_OR_RETURN(const uint32_t nparams, r.U32("parameter count"));
    if (nparams > r.left()) {
      return absl::DataLossError(
          absl::StrCat("effect blob: ", nparams, " parameters cannot fit in ", r.left(), " bytes"));
    }
    e.params.reserve(nparams);
    for (uint32_t j = 0; j < nparams; ++j) {
      ONCE_RETURN_IF_ERROR(DecodeValue(r, &e.params.emplace_back()));
    }
    effects.push_back(std::move(e));
  }
  if (r.left() != 0) {
    return absl::DataLossError(
        absl::StrCat("effect blob: ", r.left(), " trailing bytes after ", count, " effects"));
  }
  return effects;
}

}  // namespace once::participant
