#include "tests/coordinator/http_test_client.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"

namespace once::testing {
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
namespace json = boost::json;
using tcp = net::ip::tcp;

std::string HttpResult::header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

json::value HttpResult::json() const {
  beast::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return nullptr;
  return v;
}

std::string HttpResult::error_code() const {
  json::value v = json();
  if (!v.is_object()) return "";
  const json::value* error = v.as_object().if_contains("error");
  if (error == nullptr || !error->is_object()) return "";
  const json::value* code = error->as_object().if_contains("code");
  if (code == nullptr || !code->is_string()) return "";
  return std::string(code->get_string());
}

HttpTestClient::HttpTestClient(uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout), socket_(ioc_) {}

HttpTestClient::~HttpTestClient() { Close(); }

void HttpTestClient::Close() {
  beast::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  buffer_.clear();
}

bool HttpTestClient::RunUntil(const bool& done, std::chrono::milliseconds timeout, bool keep_open) {
  ioc_.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc_.run_one_until(deadline);
  }
  if (done) return true;
  beast::error_code ec;
  if (keep_open) {
    socket_.cancel(ec);
  } else {
    socket_.close(ec);  // cancels the operation; its handler sees an error
  }
  ioc_.restart();
  ioc_.run();
  return false;
}

absl::Status HttpTestClient::Connect() {
  Close();
  socket_ = tcp::socket(ioc_);
  bool done = false;
  beast::error_code result;
  socket_.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_),
                        [&](beast::error_code ec) {
                          result = ec;
                          done = true;
                        });
  if (!RunUntil(done, timeout_)) return absl::DeadlineExceededError("connect timed out");
  if (result) return absl::UnavailableError(absl::StrCat("connect: ", result.message()));
  return absl::OkStatus();
}

absl::Status HttpTestClient::SendRaw(absl::string_view bytes) {
  if (!socket_.is_open()) {
    if (absl::Status s = Connect(); !s.ok()) return s;
  }
  bool done = false;
  beast::error_code result;
  net::async_write(socket_, net::buffer(bytes.data(), bytes.size()),
                   [&](beast::error_code ec, size_t) {
                     result = ec;
                     done = true;
                   });
  if (!RunUntil(done, timeout_)) return absl::DeadlineExceededError("write timed out");
  if (result) return absl::UnavailableError(absl::StrCat("write: ", result.message()));
  return absl::OkStatus();
}

absl::StatusOr<HttpResult> HttpTestClient::ReadResponse() {
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 << 20);
  bool done = false;
  beast::error_code result;
  http::async_read(socket_, buffer_, parser, [&](beast::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  if (!RunUntil(done, timeout_)) return absl::DeadlineExceededError("read timed out");
  if (result) return absl::UnavailableError(absl::StrCat("read: ", result.message()));
  HttpResult out;
  const auto& message = parser.get();
  out.status = static_cast<int>(message.result_int());
  out.body = message.body();
  out.keep_alive = message.keep_alive();
  for (const auto& field : message) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  if (!out.keep_alive) Close();
  return out;
}

absl::StatusOr<HttpResult> HttpTestClient::Request(
    absl::string_view method, absl::string_view target, absl::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  http::request<http::string_body> request;
  request.method_string(std::string(method));
  request.target(std::string(target));
  request.version(11);
  request.set(http::field::host, absl::StrCat("127.0.0.1:", port_));
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    request.set(k, v);
    if (absl::EqualsIgnoreCase(k, "content-type")) has_type = true;
  }
  if (!body.empty() && !has_type) request.set(http::field::content_type, "application/json");
  request.body() = std::string(body);
  request.prepare_payload();
  if (!socket_.is_open()) {
    if (absl::Status s = Connect(); !s.ok()) return s;
  }
  bool done = false;
  beast::error_code result;
  http::async_write(socket_, request, [&](beast::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  if (!RunUntil(done, timeout_)) return absl::DeadlineExceededError("write timed out");
  if (result) {
    Close();
    return absl::UnavailableError(absl::StrCat("write: ", result.message()));
  }
  absl::StatusOr<HttpResult> response = ReadResponse();
  if (!response.ok()) Close();
  return response;
}

absl::StatusOr<HttpResult> HttpTestClient::Json(absl::string_view method, absl::string_view target,
                                                const json::value& body) {
  return Request(method, target, json::serialize(body));
}

absl::Status HttpTestClient::WaitForClose(std::chrono::milliseconds timeout) {
  if (!socket_.is_open()) return absl::OkStatus();
  char byte;
  bool done = false;
  beast::error_code result;
  size_t got = 0;
  socket_.async_read_some(net::buffer(&byte, 1), [&](beast::error_code ec, size_t n) {
    result = ec;
    got = n;
    done = true;
  });
  if (!RunUntil(done, timeout, /*keep_open=*/true)) {
    return absl::DeadlineExceededError("the connection stayed open");
  }
  if (!result && got > 0) {
    return absl::FailedPreconditionError("the server sent data instead of closing");
  }
  Close();
  return absl::OkStatus();
}

}  // namespace once::testing
