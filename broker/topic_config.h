// A topic's settings, their defaults and their validation.
#ifndef ONCE_BROKER_TOPIC_CONFIG_H_
#define ONCE_BROKER_TOPIC_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace once::broker {

// Stored in topic metadata: never renumber.
enum class Backend : uint8_t { kMemory = 1, kDisk = 2 };
enum class FsyncPolicy : uint8_t { kAlways = 1, kInterval = 2, kNever = 3 };

absl::string_view BackendName(Backend b);            // "memory", "disk"
absl::StatusOr<Backend> ParseBackend(absl::string_view s);
absl::string_view FsyncPolicyName(FsyncPolicy p);    // "always", "interval", "never"
absl::StatusOr<FsyncPolicy> ParseFsyncPolicy(absl::string_view s);

inline constexpr int kMaxPartitions = 1024;
inline constexpr int64_t kMaxMessageBytesLimit = 64 << 20;

struct TopicConfig {
  int partitions = 1;  // 1..kMaxPartitions
  Backend backend = Backend::kDisk;
  FsyncPolicy fsync = FsyncPolicy::kAlways;
  int64_t fsync_interval_ms = 100;       // with FsyncPolicy::kInterval; > 0
  int64_t retention_ms = -1;             // < 0: keep forever
  int64_t retention_bytes = -1;          // per partition; < 0: no limit
  int64_t max_message_bytes = 1 << 20;   // Record::PayloadBytes(); 1..kMaxMessageBytesLimit
  int64_t dedup_window_ms = 120'000;     // 0 disables producer dedup
  int64_t dedup_max_entries = 1'000'000; // per topic; the oldest go first
  int64_t segment_bytes = 64 << 20;      // disk: roll a new segment past this; >= 4096

  friend bool operator==(const TopicConfig&, const TopicConfig&) = default;
};

// kInvalidArgument naming the first setting out of range.
absl::Status ValidateTopicConfig(const TopicConfig& config);

// Topic names: 1..200 characters of [A-Za-z0-9._-], not "." or "..", and
// not starting with "__" (reserved for the service's own topics). They are
// directory names on disk, hence the strict rule.
absl::Status ValidateTopicName(absl::string_view name);

}  // namespace once::broker

#endif  // ONCE_BROKER_TOPIC_CONFIG_H_
