#include "broker/topic_config.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace once::broker {

namespace {

// Upper bounds that are not in the header: generous, but they keep a typo
// (an extra zero or two) from turning into an absurd allocation or file.
constexpr int64_t kMaxSegmentBytes = int64_t{1} << 30;
constexpr int64_t kMinSegmentBytes = 4096;
constexpr int64_t kMaxDedupEntries = 100'000'000;
constexpr size_t kMaxTopicNameLength = 200;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

}  // namespace

absl::string_view BackendName(Backend b) {
  switch (b) {
    case Backend::kMemory:
      return "memory";
    case Backend::kDisk:
      return "disk";
  }
  return "unknown";
}

absl::StatusOr<Backend> ParseBackend(absl::string_view s) {
  if (s == "memory") return Backend::kMemory;
  if (s == "disk") return Backend::kDisk;
  return absl::InvalidArgumentError(
      absl::StrCat("backend must be \"memory\" or \"disk\", not \"", s, "\""));
}

absl::string_view FsyncPolicyName(FsyncPolicy p) {
  switch (p) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kInterval:
      return "interval";
    case FsyncPolicy::kNever:
      return "never";
  }
  return "unknown";
}

absl::StatusOr<FsyncPolicy> ParseFsyncPolicy(absl::string_view s) {
  if (s == "always") return FsyncPolicy::kAlways;
  if (s == "interval") return FsyncPolicy::kInterval;
  if (s == "never") return FsyncPolicy::kNever;
  return absl::InvalidArgumentError(
      absl::StrCat("fsync must be \"always\", \"interval\" or \"never\", not \"", s, "\""));
}

absl::Status ValidateTopicConfig(const TopicConfig& c) {
  if (c.partitions < 1 || c.partitions > kMaxPartitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partitions must be in 1..", kMaxPartitions, ", not ", c.partitions));
  }
  if (c.backend != Backend::kMemory && c.backend != Backend::kDisk) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend has unknown value ", static_cast<int>(c.backend)));
  }
  if (c.fsync != FsyncPolicy::kAlways && c.fsync != FsyncPolicy::kInterval &&
      c.fsync != FsyncPolicy::kNever) {
    return absl::InvalidArgumentError(
        absl::StrCat("fsync has unknown value ", static_cast<int>(c.fsync)));
  }
  // Checked whatever the policy: the value is stored and compared by
  // CreateTopic, so a meaningless 0 would only cause confusion later.
  if (c.fsync_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("fsync_interval_ms must be > 0, not ", c.fsync_interval_ms));
  }
  // 0 is refused: it would delete every message at the next maintenance,
  // which is never what anyone means.
  if (c.retention_ms == 0) {
    return absl::InvalidArgumentError(
        "retention_ms must be > 0, or negative to keep messages forever, not 0");
  }
  if (c.retention_bytes == 0) {
    return absl::InvalidArgumentError(
        "retention_bytes must be > 0, or negative for no limit, not 0");
  }
  if (c.max_message_bytes < 1 || c.max_message_bytes > kMaxMessageBytesLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be in 1..", kMaxMessageBytesLimit, ", not ", c.max_message_bytes));
  }
  if (c.dedup_window_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup_window_ms must be >= 0 (0 disables dedup), not ", c.dedup_window_ms));
  }
  if (c.dedup_max_entries < 1 || c.dedup_max_entries > kMaxDedupEntries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dedup_max_entries must be in 1..", kMaxDedupEntries, ", not ", c.dedup_max_entries));
  }
  if (c.segment_bytes < kMinSegmentBytes || c.segment_bytes > kMaxSegmentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("segment_bytes must be in ", kMinSegmentBytes,
                                                   "..", kMaxSegmentBytes, ", not ",
                                                   c.segment_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateTopicName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxTopicNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("topic name must be 1..", kMaxTopicNameLength,
                                                   " characters, not ", name.size()));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("topic name \"", absl::CEscape(name),
                       "\" has a character outside [A-Za-z0-9._-] at ", i));
    }
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("topic name \"", name, "\" is not allowed"));
  }
  if (absl::StartsWith(name, "__")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "topic name \"", name, "\" starts with \"__\", which is reserved for the service"));
  }
  return absl::OkStatus();
}

}  // namespace once::broker
