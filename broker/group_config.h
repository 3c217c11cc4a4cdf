// A consumer group's settings, their defaults, names and validation.
//
// The enums' numbers are stored (schema/groups.sql): never renumber.
#ifndef ONCE_BROKER_GROUP_CONFIG_H_
#define ONCE_BROKER_GROUP_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::broker {

// shared: queue semantics (any consumer takes the next message, leases).
// ordered: log semantics (one consumer per partition, committed offsets).
enum class GroupMode : uint8_t { kShared = 1, kOrdered = 2 };

// kExactlyOnce groups are served by the 2PC coordinator through the lease
// API (ConsumerGroup::Lease/Pin/...); a plain Fetch on them is refused.
enum class Guarantee : uint8_t { kAtLeastOnce = 1, kIdempotent = 2, kExactlyOnce = 3 };

// Where a new group starts (and where Reset moves it).
enum class PositionKind : uint8_t { kEarliest = 1, kLatest = 2, kOffset = 3, kTime = 4 };

struct Position {
  PositionKind kind = PositionKind::kEarliest;
  int64_t value = 0;  // the offset (kOffset) or wall-clock ms (kTime)

  static Position Earliest() { return {PositionKind::kEarliest, 0}; }
  static Position Latest() { return {PositionKind::kLatest, 0}; }
  static Position Offset(int64_t o) { return {PositionKind::kOffset, o}; }
  static Position Time(int64_t ms) { return {PositionKind::kTime, ms}; }

  friend bool operator==(const Position&, const Position&) = default;
};

inline constexpr int kMaxPrefetch = 100'000;
inline constexpr int kMaxMaxDeliveries = 1'000;
inline constexpr int64_t kMaxGroupTimeoutMs = int64_t{7} * 24 * 3600 * 1000;  // a week
// Bounds of the exactly-once batching settings (txn_batch_max is also
// bounded by the most one Lease call returns, kMaxFetch, equal to it).
inline constexpr int kMaxTxnBatchMax = 10'000;
inline constexpr int64_t kMaxTxnLingerMs = 1'000;

struct GroupConfig {
  GroupMode mode = GroupMode::kShared;
  Guarantee guarantee = Guarantee::kAtLeastOnce;
  // A lease (shared) or an uncommitted delivery (ordered) not acked within
  // this is redelivered with delivery count + 1. 1..kMaxGroupTimeoutMs.
  int64_t ack_timeout_ms = 30'000;
  // A message delivered this many times without an ack goes to the
  // dead-letter topic instead of being delivered again. 1..kMaxMaxDeliveries.
  int max_deliveries = 5;
  // Empty: "<topic>-dlq". Created on first use with the source topic's
  // settings. Must be a valid topic name other than the source topic.
  std::string dead_letter_topic;
  // Most leases (shared) or unacked deliveries (ordered) one consumer may
  // hold. 1..kMaxPrefetch.
  int prefetch = 100;
  Position start;
  // Ordered mode: a consumer not seen (fetch, ack, heartbeat) for this long
  // leaves the group and its partitions are reassigned. Shared mode: it is
  // only dropped from Describe (its leases expire by ack_timeout_ms).
  int64_t session_timeout_ms = 30'000;
  // Redelivery after a timeout or a requeueing nack waits
  // min(backoff_max_ms, backoff_base_ms * 2^(deliveries - 1)). 0 disables.
  int64_t backoff_base_ms = 1'000;
  int64_t backoff_max_ms = 60'000;
  // Exactly-once groups only (any other guarantee refuses them): how the
  // 2PC coordinator batches. txn_batch_max: most messages in one PREPARE,
  // 1..kMaxTxnBatchMax. txn_linger_ms: how long a partial batch may wait
  // for more messages before it is PREPAREd, 0..kMaxTxnLingerMs and below
  // ack_timeout_ms (the batch's leases run while it lingers). Unset
  // (nullopt, NULL in the store): the service's default at each delivery,
  // onced --txn-batch-max / --txn-linger-ms.
  std::optional<int> txn_batch_max;
  std::optional<int64_t> txn_linger_ms;

  friend bool operator==(const GroupConfig&, const GroupConfig&) = default;
};

absl::string_view GroupModeName(GroupMode m);  // "shared", "ordered"
absl::StatusOr<GroupMode> ParseGroupMode(absl::string_view s);
absl::string_view GuaranteeName(Guarantee g);  // "at-least-once", "idempotent", "exactly-once"
absl::StatusOr<Guarantee> ParseGuarantee(absl::string_view s);
// "earliest", "latest", "offset:N", "time:MS" (the last two as in Describe).
std::string PositionName(const Position& p);
absl::StatusOr<Position> ParsePosition(absl::string_view s);

// The dead-letter topic of a group on `topic` with `config`.
std::string DeadLetterTopicFor(absl::string_view topic, const GroupConfig& config);

// kFailedPrecondition when a consumer may not Fetch from the group directly:
// an exactly-once group's messages go only through the coordinator (Lease).
absl::Status CheckDirectFetch(const GroupConfig& config, absl::string_view topic,
                              absl::string_view group);

// kInvalidArgument naming the first setting out of range. `topic` is the
// group's topic (the dead-letter topic must differ from it and be a valid
// topic name).
absl::Status ValidateGroupConfig(const GroupConfig& config, absl::string_view topic);

// Group names follow the topic-name rule: 1..200 of [A-Za-z0-9._-], not "."
// or "..", not starting with "__".
absl::Status ValidateGroupName(absl::string_view name);

// Consumer ids: 1..256 printable ASCII characters (no spaces, no controls).
absl::Status ValidateConsumerId(absl::string_view consumer);

}  // namespace once::broker

#endif  // ONCE_BROKER_GROUP_CONFIG_H_
