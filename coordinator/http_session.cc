#include "coordinator/http_session.h"

#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/status.hpp"
#include "boost/beast/http/verb.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "coordinator/api_error.h"
#include "coordinator/broker_api.h"
#include "coordinator/websocket_session.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
namespace websocket = boost::beast::websocket;

namespace {

// What a closing session still reads from its client (see DoLinger).
constexpr size_t kMaxLingerBytes = 4 << 20;
constexpr std::chrono::milliseconds kLingerTimeout(1000);
// A rejected connection gets this long to send its request.
constexpr std::chrono::milliseconds kRejectTimeout(2000);
constexpr uint64_t kRejectBodyLimit = 64 << 10;

bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category();
}

}  // namespace

HttpSession::HttpSession(net::ip::tcp::socket&& socket, ServerState* state, Mode mode)
    : stream_(std::move(socket)), state_(state), mode_(mode) {
  state_->metrics().ConnectionOpened();
}

HttpSession::~HttpSession() {
  if (mode_ == Mode::kServe) state_->Unregister(this);
  // An upgraded connection lives on in its WebSocketSession, which
  // releases the reservation and counts the close.
  if (upgraded_) return;
  if (mode_ == Mode::kServe) {
    state_->ReleaseConnection();
  } else {
    state_->ReleaseRejection();
  }
  state_->metrics().ConnectionClosed();
}

void HttpSession::Run() {
  if (mode_ == Mode::kServe) state_->Register(this, weak_from_this());
  // On the session's strand from here on.
  net::dispatch(stream_.get_executor(),
                beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
}

void HttpSession::Shutdown() {
  net::post(stream_.get_executor(),
            beast::bind_front_handler(&HttpSession::OnShutdown, shared_from_this()));
}

void HttpSession::OnShutdown() {
  draining_ = true;
  // Idle between requests (nothing of the next one received yet): close
  // now. Otherwise the request in progress gets its answer first.
  if (reading_ && !handling_ && parser_.has_value() && !parser_->got_some() &&
      buffer_.size() == 0) {
    CloseNow();
  }
}

void HttpSession::DoRead() {
  if (closed_) return;
  if (draining_ || (mode_ == Mode::kServe && state_->draining())) {
    DoGracefulClose();
    return;
  }
  const HttpLimits& limits = state_->limits();
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser_->body_limit(mode_ == Mode::kReject ? kRejectBodyLimit
                                             : static_cast<uint64_t>(limits.max_body_bytes));
  // One deadline for the whole request, header and body: a client that
  // dribbles bytes cannot keep the connection forever.
  if (mode_ == Mode::kReject) {
    stream_.expires_after(kRejectTimeout);
  } else {
    stream_.expires_after(std::chrono::milliseconds(limits.idle_timeout_ms));
  }
  reading_ = true;
  http::async_read_header(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&HttpSession::OnReadHeader, shared_from_this()));
}

void HttpSession::OnReadHeader(beast::error_code ec, std::size_t /*bytes*/) {
  if (ec) {
    OnReadError(ec);
    return;
  }
  const Request& request = parser_->get();
  if (mode_ == Mode::kServe && !parser_->is_done() &&
      absl::EqualsIgnoreCase(std::string(request[http::field::expect]), "100-continue")) {
    // curl and others wait for this before sending a large body.
    continue_ = {};
    continue_.version(request.version());
    continue_.result(http::status::continue_);
    http::async_write(stream_, continue_,
                      beast::bind_front_handler(&HttpSession::OnWriteContinue, shared_from_this()));
    return;
  }
  DoReadBody();
}

void HttpSession::OnWriteContinue(beast::error_code ec, std::size_t /*bytes*/) {
  if (ec) {
    CloseNow();
    return;
  }
  DoReadBody();
}

void HttpSession::DoReadBody() {
  if (parser_->is_done()) {
    OnRead({}, 0);
    return;
  }
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
}

void HttpSession::OnRead(beast::error_code ec, std::size_t /*bytes*/) {
  reading_ = false;
  if (ec) {
    OnReadError(ec);
    return;
  }
  if (mode_ == Mode::kReject) {
    version_ = parser_->get().version();
    DoWrite(ErrorResponse(ApiError(
                absl::StatusCode::kUnavailable, kTooManyConnections,
                absl::StrCat("the server has reached its limit of ",
                             state_->limits().max_connections, " connections; retry later"))),
            /*keep_alive=*/false);
    return;
  }
  if (websocket::is_upgrade(parser_->get())) {
    Upgrade();
    return;
  }
  Dispatch();
}

void HttpSession::Upgrade() {
  version_ = parser_->get().version();
  const std::string target(parser_->get().target());
  absl::Status refusal;
  BrokerApi* api = state_->api();
  if (target.substr(0, target.find_first_of("?#")) != "/v1/ws") {
    refusal = ApiError(absl::StatusCode::kNotFound, kRouteNotFound,
                       absl::StrCat("no WebSocket endpoint at ", target, "; use /v1/ws"));
  } else if (draining_ || state_->draining()) {
    refusal =
        ApiError(absl::StatusCode::kUnavailable, kShuttingDown, "the server is shutting down");
  } else if (api == nullptr || !api->ready()) {
    refusal = ApiError(absl::StatusCode::kUnavailable, kNotReady,
                       "the broker is still opening; retry shortly");
  }
  if (!refusal.ok()) {
    DoWrite(ErrorResponse(refusal), /*keep_alive=*/false);
    return;
  }
  // The connection, its reservation and its metrics move to the
  // WebSocket session; this one ends here.
  upgraded_ = true;
  closed_ = true;
  stream_.expires_never();
  std::make_shared<WebSocketSession>(stream_.release_socket(), state_, api)
      ->Run(parser_->release());
}

void HttpSession::OnReadError(beast::error_code ec) {
  reading_ = false;
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::error::operation_aborted ||
      ec == http::error::partial_message) {
    // The client went away (or we are shutting down): nothing to answer.
    CloseNow();
    return;
  }
  if (ec == beast::error::timeout) {
    // Silent or too slow: close without an answer (it would not be read).
    spdlog::debug("closing a connection that did not send a request in time");
    CloseNow();
    return;
  }
  if (mode_ == Mode::kReject) {
    version_ = 11;
    DoWrite(ErrorResponse(ApiError(absl::StatusCode::kUnavailable, kTooManyConnections,
                                   "the server has reached its connection limit; retry later")),
            /*keep_alive=*/false);
    return;
  }
  absl::Status status;
  if (ec == http::error::body_limit) {
    status = ApiError(absl::StatusCode::kInvalidArgument, kPayloadTooLarge,
                      absl::StrCat("the request body exceeds the limit of ",
                                   state_->limits().max_body_bytes, " bytes"));
  } else if (ec == http::error::header_limit) {
    status = ApiError(absl::StatusCode::kInvalidArgument, kHeaderTooLarge,
                      absl::StrCat("the request line and headers exceed the limit of ",
                                   state_->limits().max_header_bytes, " bytes"));
  } else if (IsHttpParseError(ec)) {
    status = ApiError(absl::StatusCode::kInvalidArgument, kBadRequest,
                      absl::StrCat("malformed HTTP request: ", ec.message()));
  } else {
    spdlog::debug("read error on a connection: {}", ec.message());
    CloseNow();
    return;
  }
  version_ = 11;
  if (parser_.has_value() && parser_->is_header_done()) version_ = parser_->get().version();
  // What follows in the stream cannot be trusted to be a request: answer
  // and close.
  DoWrite(ErrorResponse(status), /*keep_alive=*/false);
}

void HttpSession::Dispatch() {
  handling_ = true;
  Request& request = parser_->get();
  version_ = request.version();
  keep_alive_ = request.keep_alive();

  ApiRequest api;
  api.method = std::string(request.method_string());
  api.target = std::string(request.target());
  api.content_type = std::string(request[http::field::content_type]);
  if (auto it = request.find("Idempotency-Key"); it != request.end()) {
    api.has_idempotency_key = true;
    api.idempotency_key = std::string(it->value());
  }
  api.body = std::move(request.body());
  parser_.reset();  // the request's memory is the handler's now

  std::shared_ptr<HttpSession> self = shared_from_this();
  Responder responder([self](ApiResponse answer) {
    net::post(self->stream_.get_executor(),
              [self, answer = std::move(answer)]() mutable { self->OnAnswer(std::move(answer)); });
  });
  try {
    state_->router().Dispatch(std::move(api), responder);
  } catch (const std::exception& e) {
    // Handlers do not throw; if one does, the client still gets an answer.
    spdlog::error("a handler threw: {}", e.what());
    responder.Send(ErrorResponse(absl::InternalError("internal error while handling the request")));
  }
}

void HttpSession::OnAnswer(ApiResponse answer) {
  const bool keep_alive = keep_alive_ && !answer.close && !draining_ && !state_->draining();
  DoWrite(std::move(answer), keep_alive);
}

void HttpSession::DoWrite(ApiResponse answer, bool keep_alive) {
  if (closed_) return;
  handling_ = true;
  state_->metrics().CountResponse(answer.status);
  response_ = {};
  response_.version(version_);
  response_.result(static_cast<unsigned>(answer.status));
  response_.set(http::field::server, "onced");
  response_.set(http::field::content_type, answer.content_type);
  for (auto& [name, value] : answer.headers) response_.set(name, value);
  response_.body() = std::move(answer.body);
  response_.keep_alive(keep_alive);
  response_.prepare_payload();
  stream_.expires_after(std::chrono::milliseconds(state_->limits().idle_timeout_ms));
  http::async_write(
      stream_, response_,
      beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this(), keep_alive));
}

void HttpSession::OnWrite(bool keep_alive, beast::error_code ec, std::size_t /*bytes*/) {
  handling_ = false;
  response_ = {};
  if (ec) {
    CloseNow();
    return;
  }
  if (!keep_alive) {
    DoGracefulClose();
    return;
  }
  DoRead();
}

void HttpSession::DoGracefulClose() {
  if (closed_) return;
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec) {
    CloseNow();
    return;
  }
  stream_.expires_after(kLingerTimeout);
  DoLinger();
}

void HttpSession::DoLinger() {
  stream_.async_read_some(net::buffer(linger_buffer_),
                          beast::bind_front_handler(&HttpSession::OnLinger, shared_from_this()));
}

void HttpSession::OnLinger(beast::error_code ec, std::size_t bytes) {
  lingered_ += bytes;
  if (ec || lingered_ >= kMaxLingerBytes) {
    CloseNow();
    return;
  }
  DoLinger();
}

void HttpSession::CloseNow() {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.close();
}

}  // namespace once::coordinator
