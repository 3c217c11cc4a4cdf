// HttpSession: one HTTP/1.1 connection, in the shape of Beast's
// advanced_server http_session. It runs on its own strand and keeps
// itself alive through shared_from_this while an operation is pending.
//
// One request at a time: the session reads a request, hands it to the
// router, and reads the next only after the answer is written. So at most
// one response is ever queued per connection, and pipelined requests wait
// in the socket (the client's problem, not the server's memory).
//
// Every read and write has a deadline (HttpLimits::idle_timeout_ms), every
// request a header and a body limit; a client that is silent, slow or
// sends too much is answered when that makes sense (413, 431, 400) and
// closed. A WebSocket upgrade of /v1/ws hands the connection over to a
// WebSocketSession. A session made in reject mode (max_connections reached) reads
// one request, answers 503 and closes.
#ifndef ONCE_COORDINATOR_HTTP_SESSION_H_
#define ONCE_COORDINATOR_HTTP_SESSION_H_

#include <array>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "coordinator/api_exchange.h"
#include "coordinator/server_state.h"

namespace once::coordinator {

class HttpSession : public Session, public std::enable_shared_from_this<HttpSession> {
 public:
  enum class Mode { kServe, kReject };

  // Takes the socket (whose executor must be a strand of its own) and a
  // reservation made on `state` for `mode` (released by the destructor).
  HttpSession(boost::asio::ip::tcp::socket&& socket, ServerState* state, Mode mode);
  ~HttpSession() override;

  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  // Starts reading. Call once, on a shared_ptr.
  void Run();

  // Thread-safe: close as soon as idle; a request being read or handled
  // gets its answer first (with Connection: close).
  void Shutdown() override;

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  void DoRead();
  void OnReadHeader(boost::beast::error_code ec, std::size_t bytes);
  void OnWriteContinue(boost::beast::error_code ec, std::size_t bytes);
  void DoReadBody();
  void OnRead(boost::beast::error_code ec, std::size_t bytes);
  // A read failed: answer what deserves an answer, then close.
  void OnReadError(boost::beast::error_code ec);

  void Dispatch();
  // A WebSocket upgrade request: hand the connection to a
  // WebSocketSession (GET /v1/ws), or refuse it.
  void Upgrade();
  void OnAnswer(ApiResponse answer);
  void DoWrite(ApiResponse answer, bool keep_alive);
  void OnWrite(bool keep_alive, boost::beast::error_code ec, std::size_t bytes);

  // Half-closes, drains what the client still sends (bounded in bytes and
  // time, so that the client reads our last answer rather than a reset),
  // then closes.
  void DoGracefulClose();
  void DoLinger();
  void OnLinger(boost::beast::error_code ec, std::size_t bytes);
  void CloseNow();
  void OnShutdown();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  boost::beast::http::response<boost::beast::http::empty_body> continue_;
  Response response_;  // the one write in flight

  ServerState* const state_;
  const Mode mode_;
  bool reading_ = false;   // a read of a request is pending
  bool handling_ = false;  // a request is with its handler or being answered
  bool draining_ = false;
  bool closed_ = false;
  bool upgraded_ = false;  // the connection (and its reservation) went to a WebSocketSession
  unsigned version_ = 11;  // the current request's HTTP version
  bool keep_alive_ = true;
  size_t lingered_ = 0;
  std::array<char, 8192> linger_buffer_;
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_HTTP_SESSION_H_
