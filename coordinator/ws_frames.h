// Frames the WebSocket session sends most (schema/ws_protocol.md),
// written straight into their output string instead of through a
// boost::json DOM: a delivery or a publish answer built as a DOM cost an
// allocation per field, and serializing it a second pass.
//
// The bytes are the ones boost::json::serialize gives for the DOM the
// session used to build (same field order, same string escaping,
// integers in decimal), so clients see no change; the unit tests compare
// the two. Rare frames (errors, acks) still go through a DOM.
//
// Pure functions; thread-safe.
#ifndef ONCE_COORDINATOR_WS_FRAMES_H_
#define ONCE_COORDINATOR_WS_FRAMES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "boost/json/object.hpp"
#include "boost/json/value.hpp"
#include "broker/consumer_group.h"
#include "broker/record.h"
#include "broker/topic.h"

namespace once::coordinator {

// Appends `s` as a JSON string, escaped as boost::json::serialize does
// ("\"", "\\", \b \f \n \r \t, other control bytes as \u00xx). `s` must
// be UTF-8; bytes that are not are written as U+FFFD each (as
// Utf8OrReplacement in json_codec.cc does), keeping the output JSON.
void AppendJsonString(std::string* out, absl::string_view s);

// Appends one delivery's object: the fields of DeliveryToJson, in its
// order; with a `tag` (not 0), "delivery_tag": tag in place of
// "delivery_token" (a subscription with delivery tags, ws_protocol.md).
void AppendDeliveryJson(std::string* out, absl::string_view topic, const broker::Delivery& delivery,
                        uint64_t tag = 0);

// {"type":"message","subscription":N, <the delivery's fields>}.
std::string MessageFrame(int64_t subscription, absl::string_view topic,
                         const broker::Delivery& delivery, uint64_t tag = 0);
// {"type":"messages","subscription":N,"messages":[<deliveries>]}; with a
// `first_tag`, the deliveries carry tags first_tag, first_tag + 1, ...
std::string MessagesFrame(int64_t subscription, absl::string_view topic,
                          absl::Span<const broker::Delivery> deliveries, uint64_t first_tag = 0);

// The HTTP API's bodies of the same things (schema/http_api.md), the
// bytes of DeliveriesToJson and PublishResultsToJson serialized:
// {"messages":[<deliveries>]} and {"results":[...]}.
std::string DeliveriesBody(absl::string_view topic, absl::Span<const broker::Delivery> deliveries);
std::string PublishResultsBody(absl::Span<const broker::PublishResult> results);

// {"type":"published"[,"request":R],"results":[{"partition","offset",
// "duplicate"}...]}. `request_json` is the request's serialized JSON
// value, empty when the frame had none.
std::string PublishedFrame(absl::string_view request_json,
                           absl::Span<const broker::PublishResult> results);

// ---- frames of any type

// invalid_field (400): a frame that breaks the protocol.
absl::Status WsFrameError(absl::string_view message);

// A frame's "request" (any JSON value the client chose), if it has one.
const boost::json::value* RequestOf(const boost::json::object& frame);

// {"type":"error"[,"request":R],"code","message","status"}.
boost::json::object WsErrorFrame(const absl::Status& status, const boost::json::value* request);
// The same, serialized, with `request_json` as serialized by
// boost::json::serialize (empty: none).
std::string WsErrorFrameText(const absl::Status& status, absl::string_view request_json);

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_WS_FRAMES_H_
