#include "coordinator/ws_frames.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "coordinator/json_escape.h"

namespace once::coordinator {
namespace {

// Writes a delivery's numeric fields into a stack buffer, then appends
// them with one call: six appends of a few digits each cost more than the
// digits themselves.
class NumberRun {
 public:
  NumberRun& Text(absl::string_view text) {
    // Never past the buffer, which is sized for the callers' use below.
    const size_t n = std::min(text.size(), static_cast<size_t>(buffer_ + sizeof(buffer_) - end_));
    std::memcpy(end_, text.data(), n);
    end_ += n;
    return *this;
  }
  // AlphaNum's digits: measured cheaper than std::to_chars (libstdc++ 12).
  NumberRun& Int(int64_t v) { return Text(absl::AlphaNum(v).Piece()); }
  void AppendTo(std::string* out) const {
    out->append(buffer_, static_cast<size_t>(end_ - buffer_));
  }

 private:
  // The most written through one (AppendDeliveryJson's): 5 numbers of at
  // most 20 characters and 43 of text.
  char buffer_[192];
  char* end_ = buffer_;
};

}  // namespace

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  AppendJsonEscaped(out, s);
  out->push_back('"');
}

void AppendDeliveryJson(std::string* out, absl::string_view topic, const broker::Delivery& d,
                        uint64_t tag) {
  // Topic names are validated identifiers (ASCII): nothing in them needs
  // escaping, but escape anyway so that a change of the name rules cannot
  // break JSON. Written in place: no string built for the id.
  out->append("{\"id\":\"");
  AppendJsonEscaped(out, topic);
  // The partition and offset appear twice: in the id and as fields.
  const absl::AlphaNum partition(d.partition);
  const absl::AlphaNum offset(d.record.offset);
  NumberRun()
      .Text("/")
      .Text(partition.Piece())
      .Text("/")
      .Text(offset.Piece())
      .Text("\",\"partition\":")
      .Text(partition.Piece())
      .Text(",\"offset\":")
      .Text(offset.Piece())
      .Text(",\"timestamp_ms\":")
      .Int(d.record.timestamp_ms)
      .AppendTo(out);
  if (d.record.has_key()) {
    out->append(",\"key\":");
    AppendJsonString(out, d.record.key);
  }
  out->append(",\"headers\":");
  if (d.record.headers.empty()) {
    out->append("{}");
  } else {
    // Rare, and a repeated header name keeps its first place with its
    // last value: the DOM's behaviour, so it is rendered by the DOM.
    boost::json::object headers = DeliveryToJson(topic, d)["headers"].as_object();
    out->append(boost::json::serialize(headers));
  }
  // Text is checked for UTF-8 while it is escaped; a value that is not
  // UTF-8 (or was published as bytes) goes out as base64 instead.
  const size_t before_value = out->size();
  out->append(",\"value\":\"");
  if ((d.record.flags & broker::kRecordValueBinary) == 0 &&
      AppendJsonEscapedIfUtf8(out, d.record.value)) {
    out->push_back('"');
  } else {
    out->resize(before_value);
    out->append(",\"value_b64\":\"");
    out->append(absl::Base64Escape(d.record.value));
    out->push_back('"');
  }
  if (tag != 0) {
    NumberRun()
        .Text(",\"delivery_tag\":")
        .Int(static_cast<int64_t>(tag))
        .Text(",\"delivery_count\":")
        .Int(d.delivery_count)
        .Text("}")
        .AppendTo(out);
    return;
  }
  // A token is base64url (broker/group_token.h): nothing to check or escape.
  out->append(",\"delivery_token\":\"");
  out->append(d.token);
  NumberRun().Text("\",\"delivery_count\":").Int(d.delivery_count).Text("}").AppendTo(out);
}

std::string MessageFrame(int64_t subscription, absl::string_view topic,
                         const broker::Delivery& delivery, uint64_t tag) {
  std::string out;
  out.reserve(delivery.record.value.size() + delivery.token.size() + 192);
  absl::StrAppend(&out, "{\"type\":\"message\",\"subscription\":", subscription, ",");
  // The delivery's object, without its opening brace.
  const size_t at = out.size();
  AppendDeliveryJson(&out, topic, delivery, tag);
  out.erase(at, 1);
  return out;
}

std::string MessagesFrame(int64_t subscription, absl::string_view topic,
                          absl::Span<const broker::Delivery> deliveries, uint64_t first_tag) {
  size_t size = 64;
  for (const broker::Delivery& d : deliveries) {
    size += d.record.value.size() + d.token.size() + 160;
  }
  std::string out;
  out.reserve(size);
  absl::StrAppend(&out, "{\"type\":\"messages\",\"subscription\":", subscription,
                  ",\"messages\":[");
  for (size_t i = 0; i < deliveries.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendDeliveryJson(&out, topic, deliveries[i], first_tag == 0 ? 0 : first_tag + i);
  }
  out.append("]}");
  return out;
}

namespace {

void AppendResults(std::string* out, absl::Span<const broker::PublishResult> results) {
  out->append("\"results\":[");
  for (size_t i = 0; i < results.size(); ++i) {
    const broker::PublishResult& r = results[i];
    NumberRun()
        .Text(i > 0 ? ",{\"partition\":" : "{\"partition\":")
        .Int(r.partition)
        .Text(",\"offset\":")
        .Int(r.offset)
        .Text(r.duplicate ? ",\"duplicate\":true}" : ",\"duplicate\":false}")
        .AppendTo(out);
  }
  out->append("]");
}

}  // namespace

std::string DeliveriesBody(absl::string_view topic, absl::Span<const broker::Delivery> deliveries) {
  size_t size = 32;
  for (const broker::Delivery& d : deliveries) size += d.record.value.size() + d.token.size() + 160;
  std::string out;
  out.reserve(size);
  out.append("{\"messages\":[");
  for (size_t i = 0; i < deliveries.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendDeliveryJson(&out, topic, deliveries[i]);
  }
  out.append("]}");
  return out;
}

std::string PublishResultsBody(absl::Span<const broker::PublishResult> results) {
  std::string out;
  out.reserve(16 + results.size() * 56);
  out.push_back('{');
  AppendResults(&out, results);
  out.push_back('}');
  return out;
}

std::string PublishedFrame(absl::string_view request_json,
                           absl::Span<const broker::PublishResult> results) {
  std::string out;
  out.reserve(48 + request_json.size() + results.size() * 56);
  out.append("{\"type\":\"published\"");
  if (!request_json.empty()) absl::StrAppend(&out, ",\"request\":", request_json);
  out.push_back(',');
  AppendResults(&out, results);
  out.push_back('}');
  return out;
}

absl::Status WsFrameError(absl::string_view message) {
  return ApiError(absl::StatusCode::kInvalidArgument, kInvalidField, message);
}

const boost::json::value* RequestOf(const boost::json::object& frame) {
  const boost::json::value* r = frame.if_contains("request");
  return r == nullptr || r->is_null() ? nullptr : r;
}

boost::json::object WsErrorFrame(const absl::Status& status, const boost::json::value* request) {
  boost::json::object frame;
  frame["type"] = "error";
  if (request != nullptr) frame["request"] = *request;
  frame["code"] = ApiCodeOf(status);
  frame["message"] = std::string(status.message());
  frame["status"] = HttpStatusFor(status);
  return frame;
}

std::string WsErrorFrameText(const absl::Status& status, absl::string_view request_json) {
  std::string text = boost::json::serialize(WsErrorFrame(status, nullptr));
  if (!request_json.empty()) {
    // "request" goes right after "type", where WsErrorFrame puts it.
    constexpr absl::string_view kHead = "{\"type\":\"error\"";
    text.insert(kHead.size(), absl::StrCat(",\"request\":", request_json));
  }
  return text;
}

}  // namespace once::coordinator
