#include "tests/bench/load_http.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"

namespace once::load {
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;

HttpClient::HttpClient(const std::string& host, uint16_t port)
    : host_header_(absl::StrCat(host, ":", port)), stream_(ioc_) {}

bool HttpClient::RunUntil(const bool& done, std::chrono::steady_clock::time_point deadline) {
  ioc_.restart();
  while (!done && std::chrono::steady_clock::now() < deadline) ioc_.run_one_until(deadline);
  return done;
}

absl::StatusOr<std::unique_ptr<HttpClient>> HttpClient::Connect(const std::string& host,
                                                                uint16_t port,
                                                                std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("\"", host, "\" is not an IP address"));
  std::unique_ptr<HttpClient> c(new HttpClient(host, port));
  bool done = false;
  beast::error_code result;
  c->stream_.async_connect(net::ip::tcp::endpoint(address, port), [&](beast::error_code e) {
    result = e;
    done = true;
  });
  if (!c->RunUntil(done, std::chrono::steady_clock::now() + timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("connecting to ", c->host_header_, " timed out"));
  }
  if (result) {
    return absl::UnavailableError(
        absl::StrCat("connecting to ", c->host_header_, ": ", result.message()));
  }
  c->stream_.socket().set_option(net::ip::tcp::no_delay(true));
  return c;
}

absl::StatusOr<HttpReply> HttpClient::Request(http::verb verb, const std::string& target,
                                              absl::string_view body,
                                              std::chrono::milliseconds timeout) {
  if (broken_) return absl::FailedPreconditionError("the connection failed earlier");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, host_header_);
  req.keep_alive(true);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.prepare_payload();
  bool done = false;
  beast::error_code result;
  http::async_write(stream_, req, [&](beast::error_code e, size_t) {
    result = e;
    done = true;
  });
  http::response<http::string_body> res;
  if (RunUntil(done, deadline) && !result) {
    done = false;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 << 20);
    http::async_read(stream_, buffer_, parser, [&](beast::error_code e, size_t) {
      result = e;
      done = true;
    });
    if (RunUntil(done, deadline) && !result) res = parser.release();
  }
  if (!done) {
    broken_ = true;
    stream_.cancel();
    return absl::DeadlineExceededError(absl::StrCat(std::string(http::to_string(verb)), " ", target,
                                                    " timed out after ", timeout.count(), " ms"));
  }
  if (result) {
    broken_ = true;
    return absl::UnavailableError(
        absl::StrCat(std::string(http::to_string(verb)), " ", target, ": ", result.message()));
  }
  return HttpReply{static_cast<int>(res.result_int()), std::move(res.body())};
}

absl::Status ExpectStatus(const absl::StatusOr<HttpReply>& reply, absl::string_view what,
                          int expected, int also) {
  if (!reply.ok()) {
    return absl::Status(reply.status().code(), absl::StrCat(what, ": ", reply.status().message()));
  }
  if (reply->status != expected && (also == 0 || reply->status != also)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": HTTP ", reply->status, ": ", reply->body.substr(0, 500)));
  }
  return absl::OkStatus();
}

}  // namespace once::load
