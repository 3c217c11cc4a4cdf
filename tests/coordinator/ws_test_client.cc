#include "tests/coordinator/ws_test_client.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/address.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/websocket/error.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"

namespace once::testing {
namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
namespace json = boost::json;
using tcp = net::ip::tcp;

WsTestClient::WsTestClient(uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout), ws_(ioc_) {}

bool WsTestClient::RunUntil(const bool& done, std::chrono::milliseconds timeout) {
  ioc_.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc_.run_one_until(deadline);
  }
  return done;
}

absl::Status WsTestClient::Connect(absl::string_view target) {
  bool done = false;
  beast::error_code result;
  beast::get_lowest_layer(ws_).async_connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), port_), [&](beast::error_code ec) {
        result = ec;
        done = true;
      });
  if (!RunUntil(done, timeout_)) {
    Abort();
    return absl::DeadlineExceededError("connect timed out");
  }
  if (result) return absl::UnavailableError(absl::StrCat("connect: ", result.message()));
  done = false;
  ws_.async_handshake(absl::StrCat("127.0.0.1:", port_), std::string(target),
                      [&](beast::error_code ec) {
                        result = ec;
                        done = true;
                      });
  if (!RunUntil(done, timeout_)) {
    Abort();
    return absl::DeadlineExceededError("handshake timed out");
  }
  if (result) return absl::UnavailableError(absl::StrCat("handshake: ", result.message()));
  return absl::OkStatus();
}

absl::Status WsTestClient::Write(absl::string_view data, bool text) {
  bool done = false;
  beast::error_code result;
  ws_.text(text);
  ws_.async_write(net::buffer(data.data(), data.size()), [&](beast::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  if (!RunUntil(done, timeout_)) {
    Abort();
    return absl::DeadlineExceededError("write timed out");
  }
  if (result) return absl::UnavailableError(absl::StrCat("write: ", result.message()));
  return absl::OkStatus();
}

absl::Status WsTestClient::SendText(absl::string_view text) { return Write(text, true); }

absl::Status WsTestClient::SendBinary(absl::string_view bytes) { return Write(bytes, false); }

absl::Status WsTestClient::Send(const json::object& frame) {
  return SendText(json::serialize(frame));
}

absl::StatusOr<json::object> WsTestClient::Receive(std::chrono::milliseconds timeout) {
  if (!read_pending_) {
    read_pending_ = true;
    read_done_ = false;
    ws_.async_read(buffer_, [this](beast::error_code ec, size_t) {
      read_ec_ = ec;
      read_done_ = true;
    });
  }
  if (!RunUntil(read_done_, timeout)) return absl::DeadlineExceededError("no frame in time");
  read_pending_ = false;
  if (read_ec_) return absl::UnavailableError(absl::StrCat("read: ", read_ec_.message()));
  const std::string text = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  beast::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return absl::DataLossError(absl::StrCat("not a JSON object: ", text));
  }
  return std::move(v.as_object());
}

absl::Status WsTestClient::Close() {
  bool done = false;
  beast::error_code result;
  ws_.async_close(websocket::close_code::normal, [&](beast::error_code ec) {
    result = ec;
    done = true;
  });
  if (!RunUntil(done, timeout_)) {
    Abort();
    return absl::DeadlineExceededError("close timed out");
  }
  if (result) return absl::UnavailableError(absl::StrCat("close: ", result.message()));
  return absl::OkStatus();
}

void WsTestClient::Abort() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
  ioc_.restart();
  ioc_.poll();  // let cancelled handlers run
}

}  // namespace once::testing
