#include "coordinator/json_codec.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/array.hpp"
#include "boost/json/parser.hpp"
#include "boost/json/string.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_escape.h"
#include "schema/status_macros.h"

namespace once::coordinator {
namespace json = boost::json;

namespace {

absl::Status Malformed(absl::string_view message) {
  return ApiError(absl::StatusCode::kInvalidArgument, kMalformedJson, message);
}

absl::Status Invalid(absl::string_view message) {
  return ApiError(absl::StatusCode::kInvalidArgument, kInvalidField, message);
}

const char* KindName(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

// The integer a JSON number holds, if it holds one within int64.
std::optional<int64_t> AsInt64(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    const double d = v.get_double();
    // 2^63 is exactly representable; anything at or beyond it is out.
    if (!std::isfinite(d) || std::trunc(d) != d || d < -9223372036854775808.0 ||
        d >= 9223372036854775808.0) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::string Utf8OrReplacement(absl::string_view bytes) {
  if (IsValidUtf8(bytes)) return std::string(bytes);
  // Only reachable for records not published through this API (the JSON
  // parser validates UTF-8): keep the output valid JSON.
  std::string out;
  for (unsigned char c : bytes) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<json::object> ParseJsonObject(absl::string_view body, absl::string_view what,
                                             bool empty_is_object, json::storage_ptr storage) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    if (empty_is_object) return json::object(storage);
    return Malformed(absl::StrCat(what, ": the body is empty; a JSON object is required"));
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  json::parser parser(json::storage_ptr(), options);
  parser.reset(std::move(storage));  // where the result lives
  boost::system::error_code ec;
  const size_t consumed = parser.write(body.data(), body.size(), ec);
  if (ec) {
    return Malformed(
        absl::StrCat(what, ": not valid JSON near byte ", consumed, ": ", ec.message()));
  }
  json::value value = parser.release();
  if (!value.is_object()) {
    return Malformed(absl::StrCat(what, ": expected a JSON object, got ", KindName(value)));
  }
  return std::move(value.as_object());
}

FieldReader::FieldReader(const json::object& object, std::string what)
    : object_(object), what_(std::move(what)) {}

absl::Status FieldReader::FieldError(absl::string_view field, absl::string_view problem) const {
  return Invalid(absl::StrCat(what_, ": field \"", field, "\" ", problem));
}

const json::value* FieldReader::Get(absl::string_view field) {
  known_.emplace_back(field);
  const json::value* v = object_.if_contains(json::string_view(field.data(), field.size()));
  if (v == nullptr || v->is_null()) return nullptr;
  return v;
}

absl::Status FieldReader::Int(absl::string_view field, int64_t* out, int64_t min, int64_t max) {
  const json::value* v = Get(field);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) {
    return FieldError(field, absl::StrCat("must be an integer, got ", KindName(*v)));
  }
  std::optional<int64_t> n = AsInt64(*v);
  if (!n.has_value()) return FieldError(field, "must be an integer within 64 bits");
  if (*n < min || *n > max) {
    return FieldError(field, absl::StrCat("must be in [", min, ", ", max, "], got ", *n));
  }
  *out = *n;
  return absl::OkStatus();
}

absl::Status FieldReader::Int32(absl::string_view field, int* out) {
  int64_t n = *out;
  absl::Status s = Int(field, &n, std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
  if (s.ok()) *out = static_cast<int>(n);
  return s;
}

absl::Status FieldReader::String(absl::string_view field, std::string* out, bool* present) {
  if (present != nullptr) *present = false;
  const json::value* v = Get(field);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) {
    return FieldError(field, absl::StrCat("must be a string, got ", KindName(*v)));
  }
  *out = std::string(v->get_string());
  if (present != nullptr) *present = true;
  return absl::OkStatus();
}

absl::Status FieldReader::Bool(absl::string_view field, bool* out) {
  const json::value* v = Get(field);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_bool()) {
    return FieldError(field, absl::StrCat("must be true or false, got ", KindName(*v)));
  }
  *out = v->get_bool();
  return absl::OkStatus();
}

absl::Status FieldReader::NoOtherFields() const {
  for (const auto& field : object_) {
    if (std::find(known_.begin(), known_.end(), field.key()) == known_.end()) {
      return ApiError(absl::StatusCode::kInvalidArgument, kUnknownField,
                      absl::StrCat(what_, ": unknown field \"", std::string(field.key()), "\""));
    }
  }
  return absl::OkStatus();
}

// ---- topics

absl::StatusOr<broker::TopicConfig> TopicConfigFromJson(const json::object& body,
                                                        const broker::TopicConfig& defaults) {
  broker::TopicConfig config = defaults;
  FieldReader r(body, "topic settings");
  ONCE_RETURN_IF_ERROR(r.Int32("partitions", &config.partitions));
  std::string name;
  bool present = false;
  ONCE_RETURN_IF_ERROR(r.String("backend", &name, &present));
  if (present) {
    absl::StatusOr<broker::Backend> b = broker::ParseBackend(name);
    if (!b.ok()) return r.FieldError("backend", "must be \"memory\" or \"disk\"");
    config.backend = *b;
  }
  ONCE_RETURN_IF_ERROR(r.String("fsync", &name, &present));
  if (present) {
    absl::StatusOr<broker::FsyncPolicy> f = broker::ParseFsyncPolicy(name);
    if (!f.ok()) return r.FieldError("fsync", "must be \"always\", \"interval\" or \"never\"");
    config.fsync = *f;
  }
  ONCE_RETURN_IF_ERROR(r.Int("fsync_interval_ms", &config.fsync_interval_ms));
  ONCE_RETURN_IF_ERROR(r.Int("retention_ms", &config.retention_ms));
  ONCE_RETURN_IF_ERROR(r.Int("retention_bytes", &config.retention_bytes));
  ONCE_RETURN_IF_ERROR(r.Int("max_message_bytes", &config.max_message_bytes));
  ONCE_RETURN_IF_ERROR(r.Int("dedup_window_ms", &config.dedup_window_ms));
  ONCE_RETURN_IF_ERROR(r.Int("dedup_max_entries", &config.dedup_max_entries));
  ONCE_RETURN_IF_ERROR(r.Int("segment_bytes", &config.segment_bytes));
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  return config;
}

json::object TopicConfigToJson(const broker::TopicConfig& config) {
  json::object o;
  o["partitions"] = config.partitions;
  o["backend"] = std::string(broker::BackendName(config.backend));
  o["fsync"] = std::string(broker::FsyncPolicyName(config.fsync));
  o["fsync_interval_ms"] = config.fsync_interval_ms;
  o["retention_ms"] = config.retention_ms;
  o["retention_bytes"] = config.retention_bytes;
  o["max_message_bytes"] = config.max_message_bytes;
  o["dedup_window_ms"] = config.dedup_window_ms;
  o["dedup_max_entries"] = config.dedup_max_entries;
  o["segment_bytes"] = config.segment_bytes;
  return o;
}

json::object TopicDescriptionToJson(const broker::TopicDescription& topic,
                                    const std::vector<std::string>& groups) {
  json::object o;
  o["name"] = topic.name;
  o["config"] = TopicConfigToJson(topic.config);
  json::array partitions;
  int64_t messages = 0, bytes = 0;
  for (const broker::PartitionDescription& p : topic.partitions) {
    json::object po;
    po["partition"] = p.partition;
    po["first_offset"] = p.stats.first_offset;
    po["next_offset"] = p.stats.next_offset;
    po["messages"] = p.stats.next_offset - p.stats.first_offset;
    po["bytes"] = p.stats.size_bytes;
    po["segments"] = p.stats.segments;
    partitions.push_back(std::move(po));
    messages += p.stats.next_offset - p.stats.first_offset;
    bytes += p.stats.size_bytes;
  }
  o["messages"] = messages;
  o["bytes"] = bytes;
  o["partitions"] = std::move(partitions);
  json::array g;
  for (const std::string& name : groups) g.push_back(json::string(name));
  o["groups"] = std::move(g);
  return o;
}

// ---- publishing

namespace {

absl::StatusOr<broker::Record> MessageFromJson(const json::value& value, size_t index) {
  auto what = [index] { return absl::StrCat("message ", index); };
  if (!value.is_object()) {
    return Invalid(absl::StrCat(what(), ": must be an object, got ", KindName(value)));
  }
  const json::object& object = value.as_object();
  auto field_error = [&](absl::string_view field, absl::string_view problem) {
    return Invalid(absl::StrCat(what(), ": field \"", field, "\" ", problem));
  };
  // One pass over the fields (a publish carries many messages; a lookup
  // per field name and a check for unknown ones cost more than reading
  // them). The checks then run in a fixed order, as FieldReader's would:
  // a null counts as absent, and an unknown field is reported last.
  const json::value* key = nullptr;
  const json::value* headers = nullptr;
  const json::value* text = nullptr;
  const json::value* b64 = nullptr;
  const json::value* idempotency_key = nullptr;
  const json::key_value_pair* unknown = nullptr;
  for (const json::key_value_pair& field : object) {
    const json::string_view name = field.key();
    const json::value* v = field.value().is_null() ? nullptr : &field.value();
    if (name == "value") {
      text = v;
    } else if (name == "key") {
      key = v;
    } else if (name == "headers") {
      headers = v;
    } else if (name == "value_b64") {
      b64 = v;
    } else if (name == "idempotency_key") {
      idempotency_key = v;
    } else if (unknown == nullptr) {
      unknown = &field;
    }
  }
  auto string_field = [&](absl::string_view name, const json::value* v,
                          std::string* out) -> absl::Status {
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) {
      return field_error(name, absl::StrCat("must be a string, got ", KindName(*v)));
    }
    const json::string& str = v->get_string();
    out->assign(str.data(), str.size());
    return absl::OkStatus();
  };

  broker::Record record;
  ONCE_RETURN_IF_ERROR(string_field("key", key, &record.key));
  if (key != nullptr) record.flags |= broker::kRecordHasKey;

  if (headers != nullptr) {
    if (!headers->is_object()) {
      return field_error("headers",
                         absl::StrCat("must be an object of strings, got ", KindName(*headers)));
    }
    for (const auto& h : headers->as_object()) {
      if (!h.value().is_string()) {
        return field_error(
            "headers", absl::StrCat("has \"", std::string(h.key()), "\" which is not a string"));
      }
      record.headers.push_back(
          broker::Header{std::string(h.key()), std::string(h.value().get_string())});
    }
  }

  std::string b64_text;
  ONCE_RETURN_IF_ERROR(string_field("value", text, &record.value));
  ONCE_RETURN_IF_ERROR(string_field("value_b64", b64, &b64_text));
  if (text != nullptr && b64 != nullptr) {
    return Invalid(absl::StrCat(what(), ": give either \"value\" or \"value_b64\", not both"));
  }
  if (text == nullptr && b64 == nullptr) {
    return Invalid(absl::StrCat(what(),
                                ": \"value\" (UTF-8 text) or \"value_b64\" (base64 "
                                "bytes) is required"));
  }
  if (b64 != nullptr) {
    if (!absl::Base64Unescape(b64_text, &record.value)) {
      return field_error("value_b64", "is not valid base64");
    }
    record.flags |= broker::kRecordValueBinary;
  }

  ONCE_RETURN_IF_ERROR(string_field("idempotency_key", idempotency_key, &record.idempotency_key));
  if (idempotency_key != nullptr && record.idempotency_key.empty()) {
    return field_error("idempotency_key", "must not be empty");
  }
  if (unknown != nullptr) {
    return ApiError(absl::StatusCode::kInvalidArgument, kUnknownField,
                    absl::StrCat(what(), ": unknown field \"", std::string(unknown->key()), "\""));
  }
  return record;
}

}  // namespace

absl::StatusOr<std::vector<broker::Record>> PublishRequestFromJson(
    const json::object& body, const std::string* idempotency_header) {
  FieldReader r(body, "the publish request");
  const json::value* messages = r.Get("messages");
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (messages == nullptr) return r.FieldError("messages", "is required");
  if (!messages->is_array()) {
    return r.FieldError("messages", absl::StrCat("must be an array, got ", KindName(*messages)));
  }
  const json::array& array = messages->as_array();
  if (array.empty()) return r.FieldError("messages", "must hold at least one message");
  if (array.size() > kMaxMessagesPerPublish) {
    return r.FieldError("messages", absl::StrCat("holds ", array.size(), " messages; at most ",
                                                 kMaxMessagesPerPublish, " per request"));
  }
  std::vector<broker::Record> records;
  records.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    ONCE_ASSIGN_OR_RETURN(broker::Record record, MessageFromJson(array[i], i));
    records.push_back(std::move(record));
  }
  if (idempotency_header != nullptr) {
    if (idempotency_header->empty()) {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      "the Idempotency-Key header must not be empty");
    }
    if (records.size() != 1) {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      absl::StrCat("the Idempotency-Key header applies to a single message; this "
                                   "request has ",
                                   records.size(), " (give each its \"idempotency_key\")"));
    }
    std::string& key = records[0].idempotency_key;
    if (!key.empty() && key != *idempotency_header) {
      return ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      "the Idempotency-Key header and the message's \"idempotency_key\" differ");
    }
    key = *idempotency_header;
  }
  return records;
}

json::object PublishResultsToJson(absl::Span<const broker::PublishResult> results) {
  json::array array;
  array.reserve(results.size());
  for (const broker::PublishResult& r : results) {
    json::object o;
    o["partition"] = r.partition;
    o["offset"] = r.offset;
    o["duplicate"] = r.duplicate;
    array.push_back(std::move(o));
  }
  json::object body;
  body["results"] = std::move(array);
  return body;
}

// ---- groups

absl::StatusOr<broker::Position> PositionFromJson(const json::value& value,
                                                  absl::string_view what) {
  if (value.is_string()) {
    if (value.get_string() == "earliest") return broker::Position::Earliest();
    if (value.get_string() == "latest") return broker::Position::Latest();
  } else if (value.is_object()) {
    const json::object& o = value.as_object();
    FieldReader r(o, std::string(what));
    if (o.size() == 1 && o.contains("offset")) {
      int64_t offset = 0;
      ONCE_RETURN_IF_ERROR(r.Int("offset", &offset, 0));
      return broker::Position::Offset(offset);
    }
    if (o.size() == 1 && o.contains("time_ms")) {
      int64_t time_ms = 0;
      ONCE_RETURN_IF_ERROR(r.Int("time_ms", &time_ms, 0));
      return broker::Position::Time(time_ms);
    }
  }
  return Invalid(absl::StrCat(what,
                              ": must be \"earliest\", \"latest\", {\"offset\": N} or "
                              "{\"time_ms\": T}"));
}

json::value PositionToJson(const broker::Position& position) {
  switch (position.kind) {
    case broker::PositionKind::kEarliest:
      return json::string("earliest");
    case broker::PositionKind::kLatest:
      return json::string("latest");
    case broker::PositionKind::kOffset: {
      json::object o;
      o["offset"] = position.value;
      return o;
    }
    case broker::PositionKind::kTime: {
      json::object o;
      o["time_ms"] = position.value;
      return o;
    }
  }
  return json::string("earliest");
}

absl::StatusOr<broker::GroupConfig> GroupConfigFromJson(const json::object& body) {
  broker::GroupConfig config;
  FieldReader r(body, "group settings");
  std::string name;
  bool present = false;
  ONCE_RETURN_IF_ERROR(r.String("mode", &name, &present));
  if (present) {
    absl::StatusOr<broker::GroupMode> m = broker::ParseGroupMode(name);
    if (!m.ok()) return r.FieldError("mode", "must be \"shared\" or \"ordered\"");
    config.mode = *m;
  }
  ONCE_RETURN_IF_ERROR(r.String("guarantee", &name, &present));
  if (present) {
    absl::StatusOr<broker::Guarantee> g = broker::ParseGuarantee(name);
    if (!g.ok()) {
      return r.FieldError("guarantee",
                          "must be \"at-least-once\", \"idempotent\" or \"exactly-once\"");
    }
    config.guarantee = *g;
  }
  ONCE_RETURN_IF_ERROR(r.Int("ack_timeout_ms", &config.ack_timeout_ms));
  ONCE_RETURN_IF_ERROR(r.Int32("max_deliveries", &config.max_deliveries));
  ONCE_RETURN_IF_ERROR(r.String("dead_letter_topic", &config.dead_letter_topic));
  if (const json::value* start = r.Get("start")) {
    ONCE_ASSIGN_OR_RETURN(config.start,
                          PositionFromJson(*start, "group settings: field \"start\""));
  }
  ONCE_RETURN_IF_ERROR(r.Int32("prefetch", &config.prefetch));
  ONCE_RETURN_IF_ERROR(r.Int("session_timeout_ms", &config.session_timeout_ms));
  ONCE_RETURN_IF_ERROR(r.Int("backoff_base_ms", &config.backoff_base_ms));
  ONCE_RETURN_IF_ERROR(r.Int("backoff_max_ms", &config.backoff_max_ms));
  // Absent or null: unset (the service's default). -1 is outside both
  // ranges, so it marks "not given".
  int64_t txn_batch_max = -1;
  ONCE_RETURN_IF_ERROR(r.Int("txn_batch_max", &txn_batch_max, 1, broker::kMaxTxnBatchMax));
  if (txn_batch_max != -1) config.txn_batch_max = static_cast<int>(txn_batch_max);
  int64_t txn_linger_ms = -1;
  ONCE_RETURN_IF_ERROR(r.Int("txn_linger_ms", &txn_linger_ms, 0, broker::kMaxTxnLingerMs));
  if (txn_linger_ms != -1) config.txn_linger_ms = txn_linger_ms;
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (config.mode == broker::GroupMode::kOrdered &&
      config.guarantee == broker::Guarantee::kExactlyOnce) {
    // A rebalance of an ordered group rewinds every delivery after the
    // committed offset, pinned ones too: a batch under a COMMIT record
    // could be delivered again (see coordinator/txn_coordinator.h).
    return r.FieldError("mode",
                        "\"ordered\" with guarantee \"exactly-once\" is not supported yet; use "
                        "mode \"shared\" for exactly-once delivery");
  }
  return config;
}

json::object GroupConfigToJson(const broker::GroupConfig& config) {
  json::object o;
  o["mode"] = std::string(broker::GroupModeName(config.mode));
  o["guarantee"] = std::string(broker::GuaranteeName(config.guarantee));
  o["ack_timeout_ms"] = config.ack_timeout_ms;
  o["max_deliveries"] = config.max_deliveries;
  o["dead_letter_topic"] = config.dead_letter_topic;
  o["start"] = PositionToJson(config.start);
  o["prefetch"] = config.prefetch;
  o["session_timeout_ms"] = config.session_timeout_ms;
  o["backoff_base_ms"] = config.backoff_base_ms;
  o["backoff_max_ms"] = config.backoff_max_ms;
  if (config.guarantee == broker::Guarantee::kExactlyOnce) {
    // null: unset, the service's --txn-batch-max / --txn-linger-ms apply.
    o["txn_batch_max"] = config.txn_batch_max.has_value() ? json::value(*config.txn_batch_max)
                                                          : json::value(nullptr);
    o["txn_linger_ms"] = config.txn_linger_ms.has_value() ? json::value(*config.txn_linger_ms)
                                                          : json::value(nullptr);
  }
  return o;
}

json::object GroupDescriptionToJson(const broker::GroupDescription& g) {
  json::object o;
  o["topic"] = g.topic;
  o["name"] = g.name;
  json::object config = GroupConfigToJson(g.config);
  config["dead_letter_topic"] = g.dead_letter_topic;  // resolved
  o["config"] = std::move(config);
  o["created_ms"] = g.created_ms;
  o["generation"] = g.generation;
  o["lag"] = g.lag;
  o["leased"] = g.leased;
  o["acked"] = g.acked;
  o["dead_lettered"] = g.dead_lettered;
  json::array partitions;
  for (const broker::GroupPartitionDescription& p : g.partitions) {
    json::object po;
    po["partition"] = p.partition;
    po["first_offset"] = p.first_offset;
    po["next_offset"] = p.next_offset;
    po["done_floor"] = p.done_floor;
    po["lag"] = p.lag;
    po["leased"] = p.leased;
    po["pending_redelivery"] = p.pending_redelivery;
    po["acked"] = p.acked;
    po["dead_lettered"] = p.dead_lettered;
    if (g.config.mode == broker::GroupMode::kOrdered) po["owner"] = p.owner;
    partitions.push_back(std::move(po));
  }
  o["partitions"] = std::move(partitions);
  json::array consumers;
  for (const broker::ConsumerDescription& c : g.consumers) {
    json::object co;
    co["id"] = Utf8OrReplacement(c.id);
    co["held"] = c.held;
    co["last_seen_ms"] = c.last_seen_ms;
    if (g.config.mode == broker::GroupMode::kOrdered) {
      json::array ps;
      for (int p : c.partitions) ps.push_back(p);
      co["partitions"] = std::move(ps);
    }
    consumers.push_back(std::move(co));
  }
  o["consumers"] = std::move(consumers);
  return o;
}

absl::StatusOr<FetchRequest> FetchRequestFromJson(const json::object& body, int64_t max_wait_ms) {
  FetchRequest request;
  FieldReader r(body, "the fetch request");
  bool has_consumer = false;
  ONCE_RETURN_IF_ERROR(r.String("consumer", &request.consumer, &has_consumer));
  if (!has_consumer) return r.FieldError("consumer", "is required (the consumer's id)");
  int64_t max = request.max;
  ONCE_RETURN_IF_ERROR(r.Int("max", &max, 1, broker::kMaxFetch));
  request.max = static_cast<int>(max);
  ONCE_RETURN_IF_ERROR(r.Int("wait_ms", &request.wait_ms, 0, max_wait_ms));
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  return request;
}

json::object DeliveryToJson(absl::string_view topic, const broker::Delivery& d) {
  json::object o;
  o["id"] = absl::StrCat(topic, "/", d.partition, "/", d.record.offset);
  o["partition"] = d.partition;
  o["offset"] = d.record.offset;
  o["timestamp_ms"] = d.record.timestamp_ms;
  if (d.record.has_key()) o["key"] = Utf8OrReplacement(d.record.key);
  json::object headers;
  for (const broker::Header& h : d.record.headers) {
    headers[Utf8OrReplacement(h.key)] = Utf8OrReplacement(h.value);
  }
  o["headers"] = std::move(headers);
  if ((d.record.flags & broker::kRecordValueBinary) != 0 || !IsValidUtf8(d.record.value)) {
    o["value_b64"] = absl::Base64Escape(d.record.value);
  } else {
    o["value"] = d.record.value;
  }
  o["delivery_token"] = d.token;
  o["delivery_count"] = d.delivery_count;
  return o;
}

json::object DeliveriesToJson(absl::string_view topic,
                              absl::Span<const broker::Delivery> deliveries) {
  json::array array;
  array.reserve(deliveries.size());
  for (const broker::Delivery& d : deliveries) array.push_back(DeliveryToJson(topic, d));
  json::object body;
  body["messages"] = std::move(array);
  return body;
}

absl::StatusOr<TokensRequest> TokensRequestFromJson(const json::object& body, bool nack) {
  TokensRequest request;
  FieldReader r(body, nack ? "the nack request" : "the ack request");
  const json::value* tokens = r.Get("tokens");
  if (nack) ONCE_RETURN_IF_ERROR(r.Bool("requeue", &request.requeue));
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (tokens == nullptr) return r.FieldError("tokens", "is required");
  if (!tokens->is_array()) {
    return r.FieldError(
        "tokens", absl::StrCat("must be an array of delivery tokens, got ", KindName(*tokens)));
  }
  const json::array& array = tokens->as_array();
  if (array.empty()) return r.FieldError("tokens", "must hold at least one token");
  if (array.size() > broker::kMaxTokensPerCall) {
    return r.FieldError("tokens", absl::StrCat("holds ", array.size(), " tokens; at most ",
                                               broker::kMaxTokensPerCall, " per request"));
  }
  request.tokens.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_string()) {
      return r.FieldError(
          "tokens", absl::StrCat("element ", i, " must be a string, got ", KindName(array[i])));
    }
    request.tokens.emplace_back(array[i].get_string());
  }
  return request;
}

json::object AckResultToJson(const broker::AckResult& result) {
  json::object o;
  o["applied"] = result.applied;
  json::array refused;
  for (const broker::TokenRefusal& t : result.refused) {
    json::object ro;
    ro["index"] = static_cast<int64_t>(t.index);
    ro["token"] = Utf8OrReplacement(t.token);
    ro["reason"] = absl::IsInvalidArgument(t.status) ? "invalid" : "stale";
    ro["message"] = std::string(t.status.message());
    refused.push_back(std::move(ro));
  }
  o["refused"] = std::move(refused);
  return o;
}

absl::StatusOr<ResetRequest> ResetRequestFromJson(const json::object& body) {
  ResetRequest request;
  FieldReader r(body, "the reset request");
  const json::value* to = r.Get("to");
  int64_t partition = -1;
  ONCE_RETURN_IF_ERROR(r.Int("partition", &partition, 0, broker::kMaxPartitions - 1));
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (to == nullptr) return r.FieldError("to", "is required");
  ONCE_ASSIGN_OR_RETURN(request.to, PositionFromJson(*to, "the reset request: field \"to\""));
  request.partition = static_cast<int>(partition);
  return request;
}

}  // namespace once::coordinator
