#include "coordinator/api_exchange.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

TEST(ResponderTest, SendsOnceAcrossCopies) {
  std::vector<int> sent;
  {
    Responder a([&](ApiResponse r) { sent.push_back(r.status); });
    Responder b = a;
    EXPECT_FALSE(b.sent());
    ApiResponse first;
    first.status = 201;
    b.Send(first);
    EXPECT_TRUE(a.sent());
    ApiResponse second;
    second.status = 500;
    a.Send(second);  // ignored
  }
  EXPECT_EQ(sent, std::vector<int>({201}));
}

TEST(ResponderTest, DroppedWithoutAnswerSends500) {
  std::optional<ApiResponse> sent;
  {
    Responder r([&](ApiResponse response) { sent = std::move(response); });
    Responder copy = r;
  }
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->status, 500);
  EXPECT_NE(sent->body.find("\"code\":\"internal\""), std::string::npos);
}

TEST(ApiRequestTest, MissingParamIsEmpty) {
  ApiRequest request;
  request.params["topic"] = "t";
  EXPECT_EQ(request.param("topic"), "t");
  EXPECT_EQ(request.param("group"), "");
}

}  // namespace
}  // namespace once::coordinator
