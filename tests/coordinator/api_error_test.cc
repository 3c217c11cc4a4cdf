#include "coordinator/api_error.h"

#include "boost/json/parse.hpp"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

TEST(ApiErrorTest, CodesMapToHttpStatuses) {
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::OutOfRangeError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFor(absl::AlreadyExistsError("x")), 409);
  EXPECT_EQ(HttpStatusFor(absl::FailedPreconditionError("x")), 409);
  EXPECT_EQ(HttpStatusFor(absl::AbortedError("x")), 409);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::DeadlineExceededError("x")), 504);
  EXPECT_EQ(HttpStatusFor(absl::UnimplementedError("x")), 501);
  EXPECT_EQ(HttpStatusFor(absl::DataLossError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::UnknownError("x")), 500);
}

TEST(ApiErrorTest, SpecialApiCodesOverrideTheStatus) {
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kInvalidArgument, kPayloadTooLarge, "m")),
            413);
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kInvalidArgument, kMessageTooLarge, "m")),
            413);
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kInvalidArgument, kMethodNotAllowed, "m")),
            405);
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kInvalidArgument, kUnsupportedMediaType, "m")),
            415);
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kInvalidArgument, kHeaderTooLarge, "m")), 431);
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kUnavailable, kTooManyConnections, "m")), 503);
  // An ordinary code keeps its status.
  EXPECT_EQ(HttpStatusFor(ApiError(absl::StatusCode::kNotFound, "topic_not_found", "m")), 404);
}

TEST(ApiErrorTest, ApiCodeDefaultsToTheAbslCodeName) {
  EXPECT_EQ(ApiCodeOf(absl::InvalidArgumentError("x")), "invalid_argument");
  EXPECT_EQ(ApiCodeOf(absl::FailedPreconditionError("x")), "failed_precondition");
  EXPECT_EQ(ApiCodeOf(WithApiCode(absl::NotFoundError("x"), "group_not_found")), "group_not_found");
  EXPECT_TRUE(WithApiCode(absl::OkStatus(), "x").ok());
}

TEST(ApiErrorTest, ErrorResponseHasTheEnvelopeAndDetails) {
  boost::json::object details;
  details["applied"] = 2;
  ApiResponse r = ErrorResponse(
      WithApiCode(absl::FailedPreconditionError("token \"a\" is stale"), "stale_tokens"), details);
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.content_type, "application/json");
  boost::json::value v = boost::json::parse(r.body);
  EXPECT_EQ(v.at("error").at("code").as_string(), "stale_tokens");
  EXPECT_EQ(v.at("error").at("message").as_string(), "token \"a\" is stale");
  EXPECT_EQ(v.at("error").at("applied").as_int64(), 2);
}

}  // namespace
}  // namespace once::coordinator
