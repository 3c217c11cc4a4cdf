#include "participant/src/ws_client.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "boost/asio/buffer.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/websocket/error.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/beast/websocket/stream_base.hpp"

namespace once::participant {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

absl::StatusOr<WsUrl> ParseWsUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "ws://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("url \"", url, "\": only ws:// URLs are supported"));
  }
  WsUrl out;
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  out.target = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  const size_t colon = authority.rfind(':');
  if (colon == absl::string_view::npos) {
    out.host = std::string(authority);
    out.port = "80";
  } else {
    out.host = std::string(authority.substr(0, colon));
    out.port = std::string(authority.substr(colon + 1));
    uint32_t port = 0;
    if (!absl::SimpleAtoi(out.port, &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("url \"", url, "\": bad port"));
    }
  }
  if (out.host.empty())
    return absl::InvalidArgumentError(absl::StrCat("url \"", url, "\": no host"));
  return out;
}

WsClient::WsClient(net::io_context& ioc, WsUrl url, uint64_t max_frame_bytes,
                   std::chrono::milliseconds connect_timeout, Callbacks callbacks)
    : url_(std::move(url)),
      max_frame_bytes_(max_frame_bytes),
      connect_timeout_(connect_timeout),
      callbacks_(std::move(callbacks)),
      resolver_(ioc),
      ws_(ioc) {}

void WsClient::Start() {
  resolver_.async_resolve(
      url_.host, url_.port,
      [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
        self->OnResolve(ec, std::move(results));
      });
}

void WsClient::OnResolve(beast::error_code ec, tcp::resolver::results_type results) {
  if (closing_) return Finish(close_reason_);
  if (ec)
    return Finish(absl::UnavailableError(absl::StrCat("resolve ", url_.host, ": ", ec.message())));
  // One deadline covers connect and handshake.
  beast::get_lowest_layer(ws_).expires_after(connect_timeout_);
  beast::get_lowest_layer(ws_).async_connect(
      results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
        self->OnConnect(ec);
      });
}

void WsClient::OnConnect(beast::error_code ec) {
  if (closing_) return Finish(close_reason_);
  if (ec) {
    return Finish(absl::UnavailableError(
        absl::StrCat("connect ", url_.host, ":", url_.port, ": ", ec.message())));
  }
  // Votes and DONEs are small frames that often go out back to back: with
  // Nagle's algorithm the second waits for the ACK of the first, which the
  // service may delay by up to 40 ms.
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
  ws_.read_message_max(max_frame_bytes_);
  ws_.async_handshake(absl::StrCat(url_.host, ":", url_.port), url_.target,
                      [self = shared_from_this()](beast::error_code ec) { self->OnHandshake(ec); });
}

void WsClient::OnHandshake(beast::error_code ec) {
  if (closing_) return Finish(close_reason_);
  if (ec) {
    return Finish(absl::UnavailableError(absl::StrCat("websocket handshake with ", url_.host, ":",
                                                      url_.port, url_.target, ": ", ec.message())));
  }
  // From here the WebSocket's own timeouts apply (the tcp_stream's would
  // cut a quiet but healthy session): pings keep a silent server honest.
  beast::get_lowest_layer(ws_).expires_never();
  websocket::stream_base::timeout timeouts =
      websocket::stream_base::timeout::suggested(beast::role_type::client);
  timeouts.idle_timeout = std::chrono::seconds(30);
  timeouts.keep_alive_pings = true;
  ws_.set_option(timeouts);
  open_ = true;
  if (callbacks_.on_open) callbacks_.on_open();
  if (closing_) return;  // on_open may have closed us; OnRead reports it
  DoRead();
  DoWrite();
}

void WsClient::DoRead() {
  ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, size_t bytes) {
    self->OnRead(ec, bytes);
  });
}

void WsClient::OnRead(beast::error_code ec, size_t) {
  if (ec) {
    if (closing_) return Finish(close_reason_);
    if (ec == websocket::error::closed) {
      const websocket::close_reason& reason = ws_.reason();
      return Finish(absl::UnavailableError(absl::StrCat("the service closed the connection (code ",
                                                        static_cast<int>(reason.code), " ",
                                                        std::string(reason.reason.c_str()), ")")));
    }
    return Finish(absl::UnavailableError(absl::StrCat("read: ", ec.message())));
  }
  std::string data = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (!closing_ && callbacks_.on_frame) callbacks_.on_frame(std::move(data), ws_.got_text());
  // Keep reading even while closing: the close handshake completes in a read.
  DoRead();
}

void WsClient::Send(std::string text) {
  if (closing_ || finished_) return;
  queue_.push_back(std::move(text));
  if (open_) DoWrite();
}

void WsClient::DoWrite() {
  if (writing_ || queue_.empty() || closing_) return;
  writing_ = true;
  ws_.text(true);
  ws_.async_write(net::buffer(queue_.front()),
                  [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                    self->OnWrite(ec, bytes);
                  });
}

void WsClient::OnWrite(beast::error_code ec, size_t) {
  writing_ = false;
  if (finished_) {
    queue_.clear();  // kept alive until now: the write referenced its front
    return;
  }
  if (!queue_.empty()) queue_.pop_front();
  if (ec) {
    // The read side reports the end; make sure it ends.
    Close(absl::UnavailableError(absl::StrCat("write: ", ec.message())));
    return;
  }
  DoWrite();
}

void WsClient::Close(absl::Status why) {
  if (closing_ || finished_) return;
  closing_ = true;
  close_reason_ = std::move(why);
  if (!open_) {
    // Connecting: cancelling the resolve/connect/handshake ends it.
    resolver_.cancel();
    beast::get_lowest_layer(ws_).cancel();
    return;
  }
  // A close frame, bounded: a peer that never answers is cut off. The
  // WebSocket's handshake timeout bounds the closing handshake too; the
  // tcp_stream's own expiry cannot be used here, since a read and a write
  // may both be pending.
  websocket::stream_base::timeout timeouts;
  ws_.get_option(timeouts);
  timeouts.handshake_timeout = std::chrono::seconds(1);
  ws_.set_option(timeouts);
  ws_.async_close(
      close_reason_.ok() ? websocket::close_code::normal : websocket::close_code::policy_error,
      [self = shared_from_this()](beast::error_code) {
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
      });
}

void WsClient::Finish(absl::Status why) {
  if (finished_) return;
  finished_ = true;
  open_ = false;
  if (!writing_) queue_.clear();  // else OnWrite clears it
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  if (callbacks_.on_closed) callbacks_.on_closed(std::move(why));
}

}  // namespace once::participant
