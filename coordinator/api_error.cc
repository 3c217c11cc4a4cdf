#include "coordinator/api_error.h"

#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"

namespace once::coordinator {
namespace {

// The payload URL under which a status carries its API code.
constexpr absl::string_view kApiCodePayload = "once.api/code";

// Codes whose HTTP status is not their absl code's.
std::optional<int> SpecialHttpStatus(absl::string_view api_code) {
  if (api_code == kMethodNotAllowed) return 405;
  if (api_code == kPayloadTooLarge || api_code == kMessageTooLarge) return 413;
  if (api_code == kUnsupportedMediaType) return 415;
  if (api_code == kUpgradeRequired) return 426;
  if (api_code == kHeaderTooLarge) return 431;
  if (api_code == kTooManyConnections || api_code == kNotReady || api_code == kShuttingDown) {
    return 503;
  }
  return std::nullopt;
}

int HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    // "Exists with other settings", "stale token", "not allowed in this
    // state": the request conflicts with the resource's current state.
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return 409;
    // Backpressure (a memory budget is full): retry later.
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    default:
      return 500;
  }
}

}  // namespace

absl::Status ApiError(absl::StatusCode code, absl::string_view api_code,
                      absl::string_view message) {
  return WithApiCode(absl::Status(code, message), api_code);
}

absl::Status WithApiCode(absl::Status status, absl::string_view api_code) {
  if (status.ok()) return status;
  status.SetPayload(kApiCodePayload, absl::Cord(api_code));
  return status;
}

std::string ApiCodeOf(const absl::Status& status) {
  if (auto code = status.GetPayload(kApiCodePayload)) {
    return std::string(*code);
  }
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

int HttpStatusFor(const absl::Status& status) {
  if (auto code = status.GetPayload(kApiCodePayload)) {
    if (std::optional<int> special = SpecialHttpStatus(std::string(*code))) return *special;
  }
  return HttpStatusForCode(status.code());
}

ApiResponse ErrorResponse(const absl::Status& status, boost::json::object details) {
  boost::json::object error;
  error["code"] = ApiCodeOf(status);
  error["message"] = std::string(status.message());
  for (auto& field : details) error[field.key()] = std::move(field.value());
  boost::json::object body;
  body["error"] = std::move(error);
  ApiResponse response;
  response.status = HttpStatusFor(status);
  response.body = boost::json::serialize(body);
  return response;
}

}  // namespace once::coordinator
