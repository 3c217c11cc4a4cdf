#include "coordinator/websocket_session.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/websocket/error.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/json/monotonic_resource.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "coordinator/ws_frames.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
namespace json = boost::json;

namespace {

constexpr absl::string_view kUnknownFrameType = "unknown_frame_type";

}  // namespace

WebSocketSession::WebSocketSession(net::ip::tcp::socket&& socket, ServerState* state,
                                   BrokerApi* api)
    : ws_(std::move(socket)), state_(state), api_(api) {}

WebSocketSession::~WebSocketSession() {
  state_->Unregister(this);
  state_->ReleaseConnection();
  state_->metrics().ConnectionClosed();
}

void WebSocketSession::Run(http::request<http::string_body> upgrade) {
  state_->Register(this, weak_from_this());
  // The socket's executor is this connection's strand, and the HTTP
  // session that calls Run is on it: start at once, as Beast's examples
  // do (async_accept reads the request before it returns).
  websocket::stream_base::timeout timeout;
  timeout.handshake_timeout = std::chrono::milliseconds(state_->limits().idle_timeout_ms);
  timeout.idle_timeout = std::chrono::milliseconds(state_->limits().idle_timeout_ms);
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& response) { response.set(http::field::server, "onced"); }));
  ws_.read_message_max(static_cast<uint64_t>(state_->limits().max_body_bytes));
  ws_.async_accept(upgrade,
                   beast::bind_front_handler(&WebSocketSession::OnAccept, shared_from_this()));
}

void WebSocketSession::OnAccept(beast::error_code ec) {
  if (ec) {
    spdlog::debug("WebSocket handshake failed: {}", ec.message());
    Finish();
    return;
  }
  accepted_ = true;
  if (state_->draining()) closing_ = true;
  if (closing_) {
    DoClose();
    return;
  }
  DoRead();
}

void WebSocketSession::Shutdown() {
  net::post(ws_.get_executor(),
            beast::bind_front_handler(&WebSocketSession::OnShutdown, shared_from_this()));
}

void WebSocketSession::OnShutdown() {
  if (closing_ || finished_) return;
  closing_ = true;
  // Waiting fetches end now; what they still bring is released.
  for (auto& [id, sub] : subscriptions_) {
    sub.feed->Stop();
  }
  if (accepted_ && inflight_publishes_ == 0 && !writing_) DoClose();
}

// ---- reading

bool WebSocketSession::Congested() const {
  return queued_bytes_ >= kMaxQueuedBytes || inflight_publishes_ >= kMaxInflightPublishes;
}

void WebSocketSession::DoRead() {
  if (reading_ || closing_ || finished_ || Congested()) return;
  reading_ = true;
  ws_.async_read(buffer_, beast::bind_front_handler(&WebSocketSession::OnRead, shared_from_this()));
}

void WebSocketSession::MaybeResumeReading() {
  if (accepted_) DoRead();
}

void WebSocketSession::OnRead(beast::error_code ec, std::size_t /*bytes*/) {
  if (ec) {
    reading_ = false;
    // Closed by the peer, timed out (no pong), reset, or a frame over
    // read_message_max: the connection is over either way.
    if (ec != websocket::error::closed) {
      spdlog::debug("WebSocket read ended: {}", ec.message());
    }
    Finish();
    return;
  }
  const bool text = ws_.got_text();
  // One whole message (async_read): the buffer is contiguous.
  const auto data = buffer_.cdata();
  const absl::string_view frame(static_cast<const char*>(data.data()), data.size());
  if (!text) {
    SendError(WsFrameError("binary frames are not part of the protocol; send JSON text frames"),
              nullptr);
  } else {
    try {
      HandleFrame(frame);
    } catch (const std::exception& e) {
      spdlog::error("WebSocket frame handler threw: {}", e.what());
      SendError(absl::InternalError("internal error while handling the frame"), nullptr);
    }
  }
  // Only now may the next read start: the frame pointed into buffer_
  // (reading_ kept any handler's MaybeResumeReading from starting it).
  buffer_.consume(buffer_.size());
  reading_ = false;
  DoRead();
}

void WebSocketSession::HandleFrame(absl::string_view text) {
  // Everything parsed lives in the arena and dies with this frame; what a
  // handler keeps (a request to echo later, tokens) it copies out.
  json::monotonic_resource arena(parse_buffer_, sizeof(parse_buffer_));
  absl::StatusOr<json::object> frame =
      ParseJsonObject(text, "the frame", false, json::storage_ptr(&arena));
  if (!frame.ok()) {
    SendError(frame.status(), nullptr);
    return;
  }
  const json::value* type = frame->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    SendError(WsFrameError("the frame: field \"type\" (a string) is required"), RequestOf(*frame));
    return;
  }
  const json::string& t = type->get_string();
  if (t == "publish") {
    HandlePublish(*frame);
  } else if (t == "subscribe") {
    HandleSubscribe(*frame);
  } else if (t == "credit") {
    HandleCredit(*frame);
  } else if (t == "ack") {
    HandleAck(*frame, /*nack=*/false);
  } else if (t == "nack") {
    HandleAck(*frame, /*nack=*/true);
  } else if (t == "unsubscribe") {
    HandleUnsubscribe(*frame);
  } else if (t == "hello" || t == "vote" || t == "done") {
    HandleParticipantFrame(std::string(text));
  } else {
    SendError(ApiError(absl::StatusCode::kInvalidArgument, kUnknownFrameType,
                       absl::StrCat("unknown frame type \"", std::string(t),
                                    "\"; expected publish, subscribe, credit, ack, nack, "
                                    "unsubscribe, hello, vote or done")),
              RequestOf(*frame));
  }
}

// ---- participant sessions (coordinator/participant_session.h)

void WebSocketSession::HandleParticipantFrame(std::string text) {
  if (!participant_) {
    std::weak_ptr<WebSocketSession> weak = weak_from_this();
    ParticipantSession::Hooks hooks;
    hooks.send = [weak](std::string frame) {
      if (auto self = weak.lock()) {
        net::post(self->ws_.get_executor(),
                  [self, frame = std::move(frame)]() mutable { self->SendText(std::move(frame)); });
      }
    };
    hooks.close = [weak](std::string frame) {
      if (auto self = weak.lock()) {
        net::post(self->ws_.get_executor(), [self, frame = std::move(frame)]() mutable {
          self->SendText(std::move(frame));
          if (self->closing_ || self->finished_) return;
          self->closing_ = true;
          // The error frame goes first: OnWrite closes once the queue is empty.
          if (!self->writing_ && self->inflight_publishes_ == 0) self->DoClose();
        });
      }
    };
    hooks.run = [api = api_](std::function<void()> work) {
      net::post(api->workers(), std::move(work));
    };
    participant_ = std::make_shared<ParticipantSession>(state_->txn(), std::move(hooks));
  }
  participant_->HandleFrame(std::move(text));
}

void WebSocketSession::SendText(std::string text) {
  if (finished_) return;
  queued_bytes_ += text.size();
  queue_.push_back(std::move(text));
  if (!writing_) DoWrite();
}

// ---- writing

void WebSocketSession::Send(const json::object& frame) {
  if (finished_) return;
  std::string text = json::serialize(frame);
  queued_bytes_ += text.size();
  queue_.push_back(std::move(text));
  if (!writing_) DoWrite();
}

void WebSocketSession::SendError(const absl::Status& status, const json::value* request,
                                 json::object extra) {
  json::object frame = WsErrorFrame(status, request);
  for (auto& field : extra) frame[field.key()] = std::move(field.value());
  Send(frame);
}

void WebSocketSession::DoWrite() {
  if (!accepted_ || queue_.empty() || writing_ || finished_) return;
  writing_ = true;
  ws_.text(true);
  ws_.async_write(net::buffer(queue_.front()),
                  beast::bind_front_handler(&WebSocketSession::OnWrite, shared_from_this()));
}

void WebSocketSession::OnWrite(beast::error_code ec, std::size_t /*bytes*/) {
  writing_ = false;
  if (finished_) return;
  if (ec) {
    spdlog::debug("WebSocket write failed: {}", ec.message());
    Finish();
    return;
  }
  queued_bytes_ -= queue_.front().size();
  queue_.pop_front();
  if (!queue_.empty()) {
    DoWrite();
  } else if (closing_ && inflight_publishes_ == 0) {
    DoClose();
    return;
  }
  // Room again: fetch and read again.
  if (queued_bytes_ < kMaxQueuedBytes) PumpAll();
  MaybeResumeReading();
}

// ---- closing

void WebSocketSession::DoClose() {
  if (finished_ || !ws_.is_open()) {
    Finish();
    return;
  }
  if (close_started_) return;
  close_started_ = true;
  ws_.async_close(websocket::close_code::going_away,
                  beast::bind_front_handler(&WebSocketSession::OnClose, shared_from_this()));
}

void WebSocketSession::OnClose(beast::error_code ec) {
  if (ec) spdlog::debug("WebSocket close: {}", ec.message());
  Finish();
}

void WebSocketSession::Finish() {
  if (finished_) return;
  finished_ = true;
  closing_ = true;
  for (auto& [id, sub] : subscriptions_) {
    sub.feed->Stop();
    std::vector<std::string> tokens(sub.outstanding.begin(), sub.outstanding.end());
    const bool ordered = sub.group->config().mode == broker::GroupMode::kOrdered;
    Release(sub.group, std::move(tokens), sub.tagged.TakeAll(), ordered ? sub.consumer : "");
  }
  subscriptions_.clear();
  if (participant_) participant_->Disconnected();
  // The queue stays: a write in flight still points into its front. It
  // goes with the session.
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(ws_).close();
}

}  // namespace once::coordinator
