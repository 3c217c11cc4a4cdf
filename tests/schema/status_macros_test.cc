#include "schema/status_macros.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ONCE_ASSIGN_OR_RETURN(int half, Half(x));
  ONCE_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  ONCE_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(Quarter(8).value(), 2);
  EXPECT_THAT(Quarter(6), testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Quarter(3), testing::StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

TEST(StatusMacrosTest, ReturnIfErrorPassesOkThrough) {
  ONCE_EXPECT_OK(CheckEven(4));
  EXPECT_THAT(CheckEven(5), testing::StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace once
