#include "coordinator/router.h"

#include <string>
#include <vector>

#include "coordinator/api_error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Answers with the route's name so tests can see which one matched.
Router::Handler Named(std::string name) {
  return [name](ApiRequest request, Responder responder) {
    ApiResponse r;
    r.body = name;
    for (const auto& [k, v] : request.params) r.body += " " + k + "=" + v;
    responder.Send(std::move(r));
  };
}

ApiResponse Dispatch(const Router& router, std::string method, std::string target) {
  ApiRequest request;
  request.method = std::move(method);
  request.target = std::move(target);
  ApiResponse out;
  bool answered = false;
  router.Dispatch(std::move(request), Responder([&](ApiResponse r) {
                    out = std::move(r);
                    answered = true;
                  }));
  EXPECT_TRUE(answered);
  return out;
}

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() {
    router_.Add("GET", "/healthz", Named("health"));
    router_.Add("GET", "/v1/topics", Named("list"));
    router_.Add("PUT", "/v1/topics/{topic}", Named("create"));
    router_.Add("GET", "/v1/topics/{topic}", Named("describe"));
    router_.Add("DELETE", "/v1/topics/{topic}", Named("delete"));
    router_.Add("POST", "/v1/topics/{topic}/groups/{group}/fetch", Named("fetch"));
  }
  Router router_;
};

TEST_F(RouterTest, MatchesLiteralRoutes) {
  EXPECT_EQ(Dispatch(router_, "GET", "/healthz").body, "health");
  EXPECT_EQ(Dispatch(router_, "GET", "/v1/topics").body, "list");
}

TEST_F(RouterTest, CapturesPlaceholders) {
  EXPECT_EQ(Dispatch(router_, "PUT", "/v1/topics/orders").body, "create topic=orders");
  ApiResponse r = Dispatch(router_, "POST", "/v1/topics/orders/groups/billing/fetch");
  EXPECT_THAT(r.body, HasSubstr("fetch"));
  EXPECT_THAT(r.body, HasSubstr("topic=orders"));
  EXPECT_THAT(r.body, HasSubstr("group=billing"));
}

TEST_F(RouterTest, PercentDecodesPlaceholders) {
  EXPECT_EQ(Dispatch(router_, "GET", "/v1/topics/a%2Eb%2d").body, "describe topic=a.b-");
}

TEST_F(RouterTest, IgnoresTheQueryString) {
  EXPECT_EQ(Dispatch(router_, "GET", "/v1/topics?x=1&y=/2").body, "list");
  EXPECT_EQ(Dispatch(router_, "GET", "/v1/topics/t#frag").body, "describe topic=t");
}

TEST_F(RouterTest, UnknownPathIs404) {
  for (const char* target : {"/", "/nope", "/v1", "/v1/topics/t/x", "/v1/topics/t/",
                             "/v1/topics//groups/g/fetch", "/V1/topics"}) {
    SCOPED_TRACE(target);
    ApiResponse r = Dispatch(router_, "GET", target);
    EXPECT_EQ(r.status, 404);
    EXPECT_THAT(r.body, HasSubstr("route_not_found"));
  }
}

TEST_F(RouterTest, WrongMethodIs405WithAllow) {
  ApiResponse r = Dispatch(router_, "POST", "/v1/topics/t");
  EXPECT_EQ(r.status, 405);
  EXPECT_THAT(r.body, HasSubstr("method_not_allowed"));
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Allow");
  EXPECT_EQ(r.headers[0].second, "PUT, GET, DELETE");
  // Methods are case-sensitive (RFC 9110).
  EXPECT_EQ(Dispatch(router_, "get", "/healthz").status, 405);
}

TEST_F(RouterTest, BadTargetsAre400) {
  for (const char* target :
       {"", "*", "http://host/v1/topics", "v1/topics", "/v1/topics/%", "/v1/topics/%4",
        "/v1/topics/%zz", "/v1/topics/a%2Fb", "/v1/topics/a%00b"}) {
    SCOPED_TRACE(target);
    ApiResponse r = Dispatch(router_, "GET", target);
    EXPECT_EQ(r.status, 400);
    EXPECT_THAT(r.body, HasSubstr("bad_request"));
  }
}

TEST_F(RouterTest, FindReportsTheParams) {
  absl::StatusOr<Router::Match> m = router_.Find("POST", "/v1/topics/x/groups/y/fetch");
  ONCE_ASSERT_OK(m);
  EXPECT_THAT(m->params, ElementsAre(Pair("topic", "x"), Pair("group", "y")));
  EXPECT_THAT(router_.Find("GET", "/nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(SplitPathTest, Splits) {
  EXPECT_THAT(SplitPath("/"), ::once::testing::IsOk());
  EXPECT_TRUE(SplitPath("/")->empty());
  EXPECT_THAT(*SplitPath("/a/b"), ElementsAre("a", "b"));
  EXPECT_THAT(*SplitPath("/a//b/"), ElementsAre("a", "", "b", ""));
  EXPECT_THAT(*SplitPath("/a%20b?q"), ElementsAre("a b"));
}

TEST(RouterDuplicateTest, KeepsTheFirstRoute) {
  Router router;
  router.Add("GET", "/x", Named("first"));
  router.Add("GET", "/x", Named("second"));
  EXPECT_EQ(Dispatch(router, "GET", "/x").body, "first");
}

}  // namespace
}  // namespace once::coordinator
