#include "coordinator/ws_frames.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"

namespace once::coordinator {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Bytes JSON needs escaped: control characters, '"' and '\\'.
constexpr bool NeedsEscape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

// Escapes valid UTF-8 `s` (no quotes around it). Runs of plain bytes
// (nearly everything) are copied whole.
// True when some byte of the 8 in `w` needs escaping (SWAR, "Bit
// Twiddling Hacks": a byte below 0x20, or equal to '"' or '\\').
bool WordNeedsEscape(uint64_t w) {
  constexpr uint64_t kOnes = ~uint64_t{0} / 255;
  constexpr uint64_t kHigh = kOnes * 0x80;
  auto has_zero = [](uint64_t v) { return ((v - kOnes) & ~v & kHigh) != 0; };
  const bool below_space = ((w - kOnes * 0x20) & ~w & kHigh) != 0;
  return below_space || has_zero(w ^ (kOnes * '"')) || has_zero(w ^ (kOnes * '\\'));
}

void AppendEscaped(std::string* out, absl::string_view s) {
  size_t run = 0;  // start of the bytes not yet copied
  for (size_t i = 0; i < s.size(); ++i) {
    // Eight plain bytes at a time: values are mostly text without escapes.
    while (s.size() - i >= 8) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof(w));
      if (WordNeedsEscape(w)) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!NeedsEscape(c)) continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default: {
        const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out->append(u, sizeof(u));
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
}

}  // namespace

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  if (IsValidUtf8(s)) {
    AppendEscaped(out, s);
  } else {
    // Only reachable for records not published through the API (its
    // parser validates UTF-8).
    for (char c : s) {
      if (static_cast<unsigned char>(c) < 0x80) {
        AppendEscaped(out, absl::string_view(&c, 1));
      } else {
        out->append("\xEF\xBF\xBD");  // U+FFFD
      }
    }
  }
  out->push_back('"');
}

void AppendDeliveryJson(std::string* out, absl::string_view topic, const broker::Delivery& d) {
  // Topic names are validated identifiers (ASCII): nothing in them needs
  // escaping, but escape anyway so that a change of the name rules cannot
  // break JSON. Written in place: no string built for the id.
  out->append("{\"id\":\"");
  AppendEscaped(out, topic);
  absl::StrAppend(out, "/", d.partition, "/", d.record.offset, "\",\"partition\":", d.partition,
                  ",\"offset\":", d.record.offset, ",\"timestamp_ms\":", d.record.timestamp_ms);
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
  if ((d.record.flags & broker::kRecordValueBinary) != 0 || !IsValidUtf8(d.record.value)) {
    out->append(",\"value_b64\":\"");
    out->append(absl::Base64Escape(d.record.value));
    out->push_back('"');
  } else {
    out->append(",\"value\":\"");
    AppendEscaped(out, d.record.value);  // checked UTF-8 just above
    out->push_back('"');
  }
  // A token is base64url (broker/group_token.h): nothing to check or escape.
  out->append(",\"delivery_token\":\"");
  out->append(d.token);
  out->push_back('"');
  absl::StrAppend(out, ",\"delivery_count\":", d.delivery_count, "}");
}

std::string MessageFrame(int64_t subscription, absl::string_view topic,
                         const broker::Delivery& delivery) {
  std::string out;
  out.reserve(delivery.record.value.size() + delivery.token.size() + 192);
  absl::StrAppend(&out, "{\"type\":\"message\",\"subscription\":", subscription, ",");
  // The delivery's object, without its opening brace.
  const size_t at = out.size();
  AppendDeliveryJson(&out, topic, delivery);
  out.erase(at, 1);
  return out;
}

std::string MessagesFrame(int64_t subscription, absl::string_view topic,
                          absl::Span<const broker::Delivery> deliveries) {
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
    AppendDeliveryJson(&out, topic, deliveries[i]);
  }
  out.append("]}");
  return out;
}

namespace {

void AppendResults(std::string* out, absl::Span<const broker::PublishResult> results) {
  out->append("\"results\":[");
  for (size_t i = 0; i < results.size(); ++i) {
    const broker::PublishResult& r = results[i];
    absl::StrAppend(out, i > 0 ? "," : "", "{\"partition\":", r.partition, ",\"offset\":", r.offset,
                    ",\"duplicate\":", r.duplicate ? "true" : "false", "}");
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
