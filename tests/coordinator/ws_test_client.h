// A WebSocket client for tests, on Boost.Beast, in which every operation
// has a deadline. A Receive that times out leaves its read pending (a
// cancelled WebSocket read would fail the stream), so the next Receive
// picks up where it left.
#ifndef ONCE_TESTS_COORDINATOR_WS_TEST_CLIENT_H_
#define ONCE_TESTS_COORDINATOR_WS_TEST_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/object.hpp"

namespace once::testing {

class WsTestClient {
 public:
  explicit WsTestClient(uint16_t port,
                        std::chrono::milliseconds timeout = std::chrono::seconds(15));

  // TCP connect and WebSocket handshake on `target`.
  absl::Status Connect(absl::string_view target = "/v1/ws");

  absl::Status SendText(absl::string_view text);
  absl::Status SendBinary(absl::string_view bytes);
  absl::Status Send(const boost::json::object& frame);

  // The next frame, parsed. kDeadlineExceeded when none came within
  // `timeout` (the connection stays usable); kUnavailable when the
  // connection ended.
  absl::StatusOr<boost::json::object> Receive(std::chrono::milliseconds timeout);
  absl::StatusOr<boost::json::object> Receive() { return Receive(timeout_); }

  // A clean WebSocket close.
  absl::Status Close();
  // Drops the TCP connection without a close frame (a dead client).
  void Abort();

 private:
  bool RunUntil(const bool& done, std::chrono::milliseconds timeout);
  absl::Status Write(absl::string_view data, bool text);

  const uint16_t port_;
  const std::chrono::milliseconds timeout_;
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  bool read_pending_ = false;
  bool read_done_ = false;
  boost::beast::error_code read_ec_;
};

}  // namespace once::testing

#endif  // ONCE_TESTS_COORDINATOR_WS_TEST_CLIENT_H_
