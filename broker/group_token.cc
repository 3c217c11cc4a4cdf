#include "broker/group_token.h"

#include <xxhash.h>

#include <array>
#include <random>

#include "absl/strings/str_cat.h"
#include "schema/coding.h"

namespace once::broker {
namespace {

static_assert(kDeliveryTokenSecretBytes >= XXH3_SECRET_SIZE_MIN);
constexpr size_t kMacOffset = kDeliveryTokenBytes - 8;
// Unpadded base64 of 49 bytes: 16 groups of 3 bytes (4 characters each),
// then 1 byte (2 characters).
constexpr size_t kTokenTextLength = (kDeliveryTokenBytes * 4 + 2) / 3;
static_assert(kDeliveryTokenBytes % 3 == 1 && kTokenTextLength == 66);

// base64url (RFC 4648 §5), written out here rather than through
// absl::WebSafeBase64Escape/Unescape: a token is encoded for every
// delivery and decoded for every ack, and the general functions (with a
// std::string in between) cost ~1,200 instructions each way, more than
// the rest of the codec together.
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr uint8_t kNotBase64 = 0xFF;

constexpr std::array<uint8_t, 256> MakeDecodeTable() {
  std::array<uint8_t, 256> table{};
  for (uint8_t& v : table) v = kNotBase64;
  for (uint8_t i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = i;
  return table;
}
constexpr std::array<uint8_t, 256> kDecodeTable = MakeDecodeTable();

void EncodeTokenText(const uint8_t (&raw)[kDeliveryTokenBytes], char* out) {
  size_t i = 0;
  for (; i + 3 <= kDeliveryTokenBytes; i += 3) {
    const uint32_t v = uint32_t{raw[i]} << 16 | uint32_t{raw[i + 1]} << 8 | raw[i + 2];
    *out++ = kAlphabet[v >> 18];
    *out++ = kAlphabet[(v >> 12) & 63];
    *out++ = kAlphabet[(v >> 6) & 63];
    *out++ = kAlphabet[v & 63];
  }
  // The last byte: its 8 bits in two characters, the low 4 bits of the
  // second zero.
  *out++ = kAlphabet[raw[i] >> 2];
  *out++ = kAlphabet[(raw[i] & 3) << 4];
}

// False for a character outside the alphabet, or a last character with
// any of its 4 unused bits set (otherwise several texts would decode to
// one token).
bool DecodeTokenText(absl::string_view text, uint8_t (&raw)[kDeliveryTokenBytes]) {
  const auto* in = reinterpret_cast<const uint8_t*>(text.data());
  uint8_t bad = 0;  // the OR of every decoded value: kNotBase64 sets bit 7
  size_t o = 0;
  for (size_t i = 0; i + 4 <= kTokenTextLength; i += 4) {
    const uint8_t a = kDecodeTable[in[i]], b = kDecodeTable[in[i + 1]];
    const uint8_t c = kDecodeTable[in[i + 2]], d = kDecodeTable[in[i + 3]];
    bad |= a | b | c | d;
    const uint32_t v = uint32_t{a} << 18 | uint32_t{b} << 12 | uint32_t{c} << 6 | d;
    raw[o++] = static_cast<uint8_t>(v >> 16);
    raw[o++] = static_cast<uint8_t>(v >> 8);
    raw[o++] = static_cast<uint8_t>(v);
  }
  const uint8_t a = kDecodeTable[in[kTokenTextLength - 2]];
  const uint8_t b = kDecodeTable[in[kTokenTextLength - 1]];
  bad |= a | b;
  raw[o] = static_cast<uint8_t>(a << 2 | b >> 4);
  return (bad & 0x80) == 0 && (b & 0x0F) == 0;
}

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
  uint8_t raw[kDeliveryTokenBytes];
  char* p = reinterpret_cast<char*>(raw);
  p[0] = static_cast<char>(kDeliveryTokenVersion);
  EncodeFixed64(p + 1, t.incarnation);
  EncodeFixed32(p + 9, t.boot_epoch);
  EncodeFixed32(p + 13, t.generation);
  EncodeFixed32(p + 17, static_cast<uint32_t>(t.partition));
  EncodeFixed64(p + 21, static_cast<uint64_t>(t.offset));
  EncodeFixed64(p + 29, t.sequence);
  EncodeFixed32(p + 37, static_cast<uint32_t>(t.delivery_count));
  EncodeFixed64(p + kMacOffset, Mac(p, kMacOffset));
  std::string text(kTokenTextLength, '\0');
  EncodeTokenText(raw, text.data());
  return text;
}

absl::StatusOr<DeliveryToken> DeliveryTokenCodec::Decode(absl::string_view text) const {
  if (text.size() != kTokenTextLength) {
    return absl::InvalidArgumentError(absl::StrCat("malformed delivery token: ", text.size(),
                                                   " characters, expected ", kTokenTextLength));
  }
  uint8_t raw[kDeliveryTokenBytes];
  if (!DecodeTokenText(text, raw)) {
    return absl::InvalidArgumentError("malformed delivery token: not canonical base64url");
  }
  const char* p = reinterpret_cast<const char*>(raw);
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
