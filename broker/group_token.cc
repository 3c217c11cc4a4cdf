#include "broker/group_token.h"

#include <xxhash.h>

#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "schema/coding.h"

namespace once::broker {
namespace {

static_assert(kDeliveryTokenSecretBytes >= XXH3_SECRET_SIZE_MIN);
constexpr size_t kMacOffset = kDeliveryTokenBytes - 8;
// Unpadded base64 of 49 bytes.
constexpr size_t kTokenTextLength = (kDeliveryTokenBytes * 4 + 2) / 3;

}  // namespace

absl::StatusOr<DeliveryTokenCodec> DeliveryTokenCodec::Create(std::string secret) {
  if (secret.size() != kDeliveryTokenSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat("delivery token secret must have ",
                                                   kDeliveryTokenSecretBytes, " bytes, not ",
                                                   secret.size()));
  }
  return DeliveryTokenCodec(std::move(secret));
}

std::string DeliveryTokenCodec::NewSecret() {
  std::random_device device;  // /dev/urandom on Linux
  std::string secret(kDeliveryTokenSecretBytes, '\0');
  for (size_t i = 0; i < secret.size(); i += 4) {
    uint32_t r = device();
    for (size_t j = 0; j < 4 && i + j < secret.size(); ++j) {
      secret[i + j] = static_cast<char>(r >> (8 * j));
    }
  }
  return secret;
}

uint64_t DeliveryTokenCodec::Mac(const char* data, size_t n) const {
  return XXH3_64bits_withSecret(data, n, secret_.data(), secret_.size());
}

std::string DeliveryTokenCodec::Encode(const DeliveryToken& t) const {
  std::string raw;
  raw.reserve(kDeliveryTokenBytes);
  raw.push_back(static_cast<char>(kDeliveryTokenVersion));
  PutFixed64(&raw, t.incarnation);
  PutFixed32(&raw, t.boot_epoch);
  PutFixed32(&raw, t.generation);
  PutFixed32(&raw, static_cast<uint32_t>(t.partition));
  PutFixed64(&raw, static_cast<uint64_t>(t.offset));
  PutFixed64(&raw, t.sequence);
  PutFixed32(&raw, static_cast<uint32_t>(t.delivery_count));
  PutFixed64(&raw, Mac(raw.data(), raw.size()));
  std::string text;
  absl::WebSafeBase64Escape(raw, &text);
  return text;
}

absl::StatusOr<DeliveryToken> DeliveryTokenCodec::Decode(absl::string_view text) const {
  if (text.size() != kTokenTextLength) {
    return absl::InvalidArgumentError(absl::StrCat("malformed delivery token: ", text.size(),
                                                   " characters, expected ", kTokenTextLength));
  }
  std::string raw;
  if (!absl::WebSafeBase64Unescape(text, &raw) || raw.size() != kDeliveryTokenBytes) {
    return absl::InvalidArgumentError("malformed delivery token: not base64url");
  }
  // Base64 of 49 bytes leaves 4 unused bits in the last character, which
  // must be zero: otherwise several texts would decode to one token. The
  // characters whose 6-bit value has its low 4 bits clear are A, Q, g, w.
  const char last = text.back();
  if (last != 'A' && last != 'Q' && last != 'g' && last != 'w') {
    return absl::InvalidArgumentError("malformed delivery token: not in canonical base64url");
  }
  const char* p = raw.data();
  if (static_cast<uint8_t>(p[0]) != kDeliveryTokenVersion) {
    return absl::InvalidArgumentError(absl::StrCat("malformed delivery token: version ",
                                                   static_cast<uint8_t>(p[0]), ", expected ",
                                                   kDeliveryTokenVersion));
  }
  if (DecodeFixed64(p + kMacOffset) != Mac(p, kMacOffset)) {
    return absl::InvalidArgumentError(
        "forged or altered delivery token: its check value does not match");
  }
  DeliveryToken t;
  t.incarnation = DecodeFixed64(p + 1);
  t.boot_epoch = DecodeFixed32(p + 9);
  t.generation = DecodeFixed32(p + 13);
  t.partition = static_cast<int32_t>(DecodeFixed32(p + 17));
  t.offset = static_cast<int64_t>(DecodeFixed64(p + 21));
  t.sequence = DecodeFixed64(p + 29);
  t.delivery_count = static_cast<int32_t>(DecodeFixed32(p + 37));
  return t;
}

}  // namespace once::broker
