// Delivery tokens: the handle a consumer gets with each delivery and gives
// back to ack or nack it. A token names exactly one delivery: the group's
// incarnation, the registry's boot epoch, the ordered group's generation,
// the partition and offset, the delivery's sequence number (unique per
// delivery within a boot epoch) and its delivery count. A late ack for a
// message that was redelivered since carries an older sequence number and
// so can never apply to the newer delivery.
//
// Wire form: unpadded base64url of these little-endian bytes (49 bytes,
// 66 characters):
//
//   u8  version (= kDeliveryTokenVersion)
//   u64 incarnation      the group's id in the store; never reused
//   u32 boot_epoch       bumped each time the registry opens
//   u32 generation       ordered mode's group generation; 0 in shared mode
//   u32 partition
//   u64 offset
//   u64 sequence
//   u32 delivery_count   1 on the first delivery
//   u64 mac              XXH3-64 keyed with the registry's 192-byte secret
//                        over the 41 bytes before it
//
// The mac makes tokens unforgeable-ish: a client cannot make or alter one
// by accident or by casual guessing. It is not a cryptographic MAC (the
// project has no crypto library); a determined attacker with many tokens
// is out of scope. Tokens are opaque to clients: only this file parses them.
#ifndef ONCE_BROKER_GROUP_TOKEN_H_
#define ONCE_BROKER_GROUP_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace once::broker {

inline constexpr uint8_t kDeliveryTokenVersion = 1;
inline constexpr size_t kDeliveryTokenBytes = 49;
inline constexpr size_t kDeliveryTokenSecretBytes = 192;

struct DeliveryToken {
  uint64_t incarnation = 0;
  uint32_t boot_epoch = 0;
  uint32_t generation = 0;
  int32_t partition = 0;
  int64_t offset = 0;
  uint64_t sequence = 0;
  int32_t delivery_count = 0;

  friend bool operator==(const DeliveryToken&, const DeliveryToken&) = default;
};

// Encodes and verifies tokens with one secret. Immutable; thread-safe.
class DeliveryTokenCodec {
 public:
  // `secret` must hold kDeliveryTokenSecretBytes bytes (checked by Create).
  static absl::StatusOr<DeliveryTokenCodec> Create(std::string secret);
  // kDeliveryTokenSecretBytes random bytes from the OS.
  static std::string NewSecret();

  std::string Encode(const DeliveryToken& token) const;

  // kInvalidArgument for anything but a token this codec made: wrong
  // length or alphabet, unknown version, a mac that does not match
  // (forged, altered or made with another secret).
  absl::StatusOr<DeliveryToken> Decode(absl::string_view text) const;

 private:
  explicit DeliveryTokenCodec(std::string secret) : secret_(std::move(secret)) {}
  uint64_t Mac(const char* data, size_t n) const;

  std::string secret_;
};

// The deliveries one Ack/Nack/Pin call names, by position: token texts
// as a client hands them back (decoded and verified by the group), or
// handles, tokens the service kept decoded itself since the fetch
// (Delivery::handle; never seen by a client, so only checked to be the
// group's). Views: the span must outlive the call.
class TokenRefs {
 public:
  explicit TokenRefs(absl::Span<const std::string> texts) : texts_(texts), handles_mode_(false) {}
  explicit TokenRefs(absl::Span<const DeliveryToken> handles)
      : handles_(handles), handles_mode_(true) {}

  size_t size() const { return handles_mode_ ? handles_.size() : texts_.size(); }
  bool handles() const { return handles_mode_; }
  const std::string& text(size_t i) const { return texts_[i]; }
  const DeliveryToken& handle(size_t i) const { return handles_[i]; }

 private:
  absl::Span<const std::string> texts_;
  absl::Span<const DeliveryToken> handles_;
  bool handles_mode_;
};

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_TOKEN_H_
