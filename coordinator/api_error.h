// Errors of the HTTP API: every error answer is a status code with
// {"error": {"code": "...", "message": "...", ...details}}.
//
// Handlers work with absl::Status. A status may carry an API error code
// (ApiError(), WithApiCode()) more precise than its absl code, e.g.
// "topic_not_found" instead of "not_found"; HttpStatusFor() is the one
// place that maps a status to an HTTP status code. The codes and their
// statuses are listed in schema/http_api.md.
#ifndef ONCE_COORDINATOR_API_ERROR_H_
#define ONCE_COORDINATOR_API_ERROR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "boost/json/object.hpp"
#include "coordinator/api_exchange.h"

namespace once::coordinator {

// API error codes with an HTTP status of their own (not derived from the
// absl code). Other codes take their status from the absl code.
inline constexpr absl::string_view kMalformedJson = "malformed_json";
inline constexpr absl::string_view kInvalidField = "invalid_field";
inline constexpr absl::string_view kUnknownField = "unknown_field";
inline constexpr absl::string_view kInvalidName = "invalid_name";
inline constexpr absl::string_view kBadRequest = "bad_request";
inline constexpr absl::string_view kRouteNotFound = "route_not_found";
inline constexpr absl::string_view kMethodNotAllowed = "method_not_allowed";          // 405
inline constexpr absl::string_view kPayloadTooLarge = "payload_too_large";            // 413
inline constexpr absl::string_view kMessageTooLarge = "message_too_large";            // 413
inline constexpr absl::string_view kUnsupportedMediaType = "unsupported_media_type";  // 415
inline constexpr absl::string_view kUpgradeRequired = "upgrade_required";             // 426
inline constexpr absl::string_view kHeaderTooLarge = "header_too_large";              // 431
inline constexpr absl::string_view kTooManyConnections = "too_many_connections";      // 503
inline constexpr absl::string_view kNotReady = "not_ready";                           // 503
inline constexpr absl::string_view kShuttingDown = "shutting_down";                   // 503

// A status of `code` carrying `api_code`.
absl::Status ApiError(absl::StatusCode code, absl::string_view api_code, absl::string_view message);

// `status` with `api_code` attached (replacing any); OK stays OK.
absl::Status WithApiCode(absl::Status status, absl::string_view api_code);

// The API code of `status`: its attached code, else the absl code's
// snake_case name ("invalid_argument", "not_found", ...).
std::string ApiCodeOf(const absl::Status& status);

// The HTTP status for a non-OK `status`.
int HttpStatusFor(const absl::Status& status);

// The error answer for a non-OK `status`; `details` are merged into the
// "error" object (e.g. the refused tokens of an ack).
ApiResponse ErrorResponse(const absl::Status& status, boost::json::object details = {});

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_API_ERROR_H_
