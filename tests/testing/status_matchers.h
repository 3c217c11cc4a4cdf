// gMock matchers for absl::Status and absl::StatusOr, which Abseil 20220623
// does not ship.
#ifndef ONCE_TESTS_TESTING_STATUS_MATCHERS_H_
#define ONCE_TESTS_TESTING_STATUS_MATCHERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "schema/status_macros.h"

namespace once::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + ::testing::PrintToString(code)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

}  // namespace once::testing

#define ONCE_ASSERT_OK(expr) ASSERT_THAT(expr, ::once::testing::IsOk())
#define ONCE_EXPECT_OK(expr) EXPECT_THAT(expr, ::once::testing::IsOk())

// `ONCE_ASSERT_OK_AND_ASSIGN(auto x, Foo());` in a test body.
#define ONCE_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ONCE_ASSERT_OK_AND_ASSIGN_IMPL_(ONCE_STATUS_CONCAT_(once_test_or_, __LINE__), lhs, expr)
#define ONCE_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  ASSERT_THAT(statusor, ::once::testing::IsOk());            \
  lhs = std::move(statusor).value()

#endif  // ONCE_TESTS_TESTING_STATUS_MATCHERS_H_
