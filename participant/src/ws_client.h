// A WebSocket client connection on Boost.Beast for the participant SDK:
// resolve, connect and handshake under one deadline, then a read loop that
// hands every frame to a callback, and a write queue with one write in
// flight. All callbacks run on the io_context's thread; the owner runs
// that io_context on one thread, so no strand is needed.
//
// Lifetime: held by shared_ptr; pending operations keep it alive. on_closed
// runs exactly once per Start(), last, whatever ended the connection.
#ifndef ONCE_PARTICIPANT_SRC_WS_CLIENT_H_
#define ONCE_PARTICIPANT_SRC_WS_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/websocket/stream.hpp"

namespace once::participant {

// ws://host[:port][/path]; the port defaults to 80, the path to "/".
struct WsUrl {
  std::string host;
  std::string port;
  std::string target;
};
absl::StatusOr<WsUrl> ParseWsUrl(absl::string_view url);

class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  struct Callbacks {
    std::function<void()> on_open;
    std::function<void(std::string data, bool text)> on_frame;
    std::function<void(absl::Status why)> on_closed;
  };

  WsClient(boost::asio::io_context& ioc, WsUrl url, uint64_t max_frame_bytes,
           std::chrono::milliseconds connect_timeout, Callbacks callbacks);

  void Start();
  // Queues a text frame; dropped when the connection is not open.
  void Send(std::string text);
  // Ends the connection with a close frame (bounded by a short deadline);
  // on_closed then gets `why`. Idempotent.
  void Close(absl::Status why);

 private:
  void OnResolve(boost::beast::error_code ec, boost::asio::ip::tcp::resolver::results_type results);
  void OnConnect(boost::beast::error_code ec);
  void OnHandshake(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void Finish(absl::Status why);

  const WsUrl url_;
  const uint64_t max_frame_bytes_;
  const std::chrono::milliseconds connect_timeout_;
  Callbacks callbacks_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  bool open_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
  absl::Status close_reason_;
};

}  // namespace once::participant

#endif  // ONCE_PARTICIPANT_SRC_WS_CLIENT_H_
