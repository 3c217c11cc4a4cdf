// The JSON bodies of the HTTP API (schema/http_api.md): parsing requests
// strictly (types checked, unknown fields refused where a typo would
// silently change behaviour, every error naming the field) and rendering
// the broker's types. Pure functions; thread-safe.
//
// Every parse error is kInvalidArgument with an API code: malformed_json
// (not JSON, too deep, not an object), invalid_field (wrong type or
// value) or unknown_field.
#ifndef ONCE_COORDINATOR_JSON_CODEC_H_
#define ONCE_COORDINATOR_JSON_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "boost/json/object.hpp"
#include "boost/json/storage_ptr.hpp"
#include "boost/json/value.hpp"
#include "broker/consumer_group.h"
#include "broker/group_config.h"
#include "broker/record.h"
#include "broker/topic.h"
#include "broker/topic_config.h"

namespace once::coordinator {

// Most messages one publish request may carry.
inline constexpr size_t kMaxMessagesPerPublish = 10'000;
// Nesting deeper than this is refused as malformed (a cheap attack on a
// recursive parser; no API body needs more than 4 levels).
inline constexpr size_t kMaxJsonDepth = 16;

// Parses `body` as one JSON object. An empty (or all-whitespace) body is
// an empty object when `empty_is_object`, else malformed_json. `what`
// names the body in messages ("the publish request"). The result is
// allocated from `storage` (default: the heap); a caller that parses one
// frame at a time can pass a boost::json::monotonic_resource it reuses.
absl::StatusOr<boost::json::object> ParseJsonObject(absl::string_view body, absl::string_view what,
                                                    bool empty_is_object,
                                                    boost::json::storage_ptr storage = {});

// Reads the fields of one JSON object with type checks. Each getter
// leaves *out alone when the field is absent or null, and fails with
// invalid_field naming the field (and `what`) when it has another type or
// is out of range. NoOtherFields() then refuses any field no getter asked
// for. Not thread-safe; the object must outlive the reader.
class FieldReader {
 public:
  FieldReader(const boost::json::object& object, std::string what);

  absl::Status Int(absl::string_view field, int64_t* out, int64_t min = INT64_MIN,
                   int64_t max = INT64_MAX);
  absl::Status Int32(absl::string_view field, int* out);
  absl::Status String(absl::string_view field, std::string* out, bool* present = nullptr);
  absl::Status Bool(absl::string_view field, bool* out);
  // The raw value (nullptr when absent or null); marks the field known.
  const boost::json::value* Get(absl::string_view field);

  // unknown_field naming the first field that no getter asked for.
  absl::Status NoOtherFields() const;

  // invalid_field "<what>: field \"<field>\" <problem>".
  absl::Status FieldError(absl::string_view field, absl::string_view problem) const;

  const std::string& what() const { return what_; }

 private:
  const boost::json::object& object_;
  const std::string what_;
  // The names asked for: a message has a handful of fields, so they stay
  // inline (no allocation per message of a publish).
  absl::InlinedVector<std::string, 8> known_;
};

// ---- topics

// A topic's settings: `defaults` with the fields `body` gives. Fields:
// partitions, backend, fsync, fsync_interval_ms, retention_ms,
// retention_bytes, max_message_bytes, dedup_window_ms, dedup_max_entries,
// segment_bytes; nothing else. Ranges are the broker's to check
// (ValidateTopicConfig).
absl::StatusOr<broker::TopicConfig> TopicConfigFromJson(const boost::json::object& body,
                                                        const broker::TopicConfig& defaults);
boost::json::object TopicConfigToJson(const broker::TopicConfig& config);
boost::json::object TopicDescriptionToJson(const broker::TopicDescription& topic,
                                           const std::vector<std::string>& groups);

// ---- publishing

// {"messages": [{"key", "headers", "value" | "value_b64", "idempotency_key"}]}:
// 1..kMaxMessagesPerPublish messages, exactly one of value and value_b64
// each (an empty string is a value), headers an object of strings.
// `idempotency_header` (the Idempotency-Key header, nullptr when absent)
// applies to a single-message request only, and must agree with the
// message's own idempotency_key if both are given.
absl::StatusOr<std::vector<broker::Record>> PublishRequestFromJson(
    const boost::json::object& body, const std::string* idempotency_header);
boost::json::object PublishResultsToJson(absl::Span<const broker::PublishResult> results);

// ---- groups

// Fields: mode, guarantee, ack_timeout_ms, max_deliveries,
// dead_letter_topic, start, prefetch, session_timeout_ms,
// backoff_base_ms, backoff_max_ms, txn_batch_max, txn_linger_ms (the
// last two for exactly-once groups; absent or null: unset); nothing else.
absl::StatusOr<broker::GroupConfig> GroupConfigFromJson(const boost::json::object& body);
boost::json::object GroupConfigToJson(const broker::GroupConfig& config);
boost::json::object GroupDescriptionToJson(const broker::GroupDescription& group);

// "earliest" | "latest" | {"offset": N} | {"time_ms": T}.
absl::StatusOr<broker::Position> PositionFromJson(const boost::json::value& value,
                                                  absl::string_view what);
boost::json::value PositionToJson(const broker::Position& position);

struct FetchRequest {
  std::string consumer;
  int max = 10;
  int64_t wait_ms = 0;
};
// {"consumer", "max" (1..kMaxFetch, default 10), "wait_ms" (0..max_wait_ms,
// default 0)}.
absl::StatusOr<FetchRequest> FetchRequestFromJson(const boost::json::object& body,
                                                  int64_t max_wait_ms);

// One delivered message: id ("topic/partition/offset"), partition,
// offset, timestamp_ms, key (when it has one), headers, value or
// value_b64 (as published; bytes that are not UTF-8 always go as
// value_b64), delivery_token, delivery_count.
boost::json::object DeliveryToJson(absl::string_view topic, const broker::Delivery& delivery);
boost::json::object DeliveriesToJson(absl::string_view topic,
                                     absl::Span<const broker::Delivery> deliveries);

struct TokensRequest {
  std::vector<std::string> tokens;
  bool requeue = true;  // nack only
};
// Ack: {"tokens": [1..kMaxTokensPerCall strings]}. Nack: the same plus
// "requeue" (bool, default true).
absl::StatusOr<TokensRequest> TokensRequestFromJson(const boost::json::object& body, bool nack);
// {"applied": N, "refused": [{"index", "token", "reason"}]}.
boost::json::object AckResultToJson(const broker::AckResult& result);

struct ResetRequest {
  broker::Position to;
  int partition = -1;  // all
};
// {"to": position (required), "partition": N (optional)}.
absl::StatusOr<ResetRequest> ResetRequestFromJson(const boost::json::object& body);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_JSON_CODEC_H_
