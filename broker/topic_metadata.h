// A topic's metadata file, <data_dir>/topics/<name>/topic.meta: the topic's
// name and config, versioned and CRC-checked. The byte layout and the JSON
// fields are documented in broker/topic_metadata.md; change them only
// together with that document and kTopicMetadataVersion.
#ifndef ONCE_BROKER_TOPIC_METADATA_H_
#define ONCE_BROKER_TOPIC_METADATA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/topic_config.h"

namespace once::broker {

inline constexpr char kTopicMetadataFileName[] = "topic.meta";
// "OTMF", read as little-endian u32 from the file's first four bytes.
inline constexpr uint32_t kTopicMetadataMagic = 0x464D544F;
inline constexpr uint32_t kTopicMetadataVersion = 1;
inline constexpr size_t kTopicMetadataHeaderSize = 16;
// A config is a few hundred bytes; anything near this is damage.
inline constexpr uint32_t kTopicMetadataMaxPayload = 64 << 10;
// Names the partitioning rule in the file (see broker/partitioner.h), so
// that data laid out by another rule is never silently misread.
inline constexpr char kPartitionerName[] = "xxh64-seed0-mod";

struct TopicMetadata {
  std::string name;
  TopicConfig config;
  int64_t created_ms = 0;  // wall clock at CreateTopic; informational

  friend bool operator==(const TopicMetadata&, const TopicMetadata&) = default;
};

// The file's bytes for `meta`.
std::string EncodeTopicMetadata(const TopicMetadata& meta);

// Parses and checks file bytes: magic, version, length, CRC, JSON fields
// (all required; unknown ones ignored), partitioner, and the name and config
// rules. Every failure is kDataLoss naming `file` (used only in messages)
// and what is wrong.
absl::StatusOr<TopicMetadata> DecodeTopicMetadata(absl::string_view bytes, absl::string_view file);

// Writes <dir>/topic.meta atomically and durably: <dir>/topic.meta.tmp is
// written and fsynced, renamed over topic.meta, and `dir` is fsynced. A
// crash at any point leaves either the old file or the new one, never a mix.
absl::Status WriteTopicMetadata(const std::string& dir, const TopicMetadata& meta);

// Reads and decodes <dir>/topic.meta. kNotFound when the file does not exist,
// kDataLoss when it is damaged (DecodeTopicMetadata), other errno-based codes
// for I/O errors; every message names the file.
absl::StatusOr<TopicMetadata> ReadTopicMetadata(const std::string& dir);

}  // namespace once::broker

#endif  // ONCE_BROKER_TOPIC_METADATA_H_
