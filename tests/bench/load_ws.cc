#include "tests/bench/load_ws.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "tests/bench/load_messages_frame.h"

namespace once::load {
namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
namespace json = boost::json;

namespace {

// Paced publishers never let more frames than this wait for answers: past
// it the service is not keeping up, and the schedule slips instead.
constexpr int kMaxPacedOutstanding = 10'000;
// A consumer acks what it holds after this long even when it holds fewer
// than --ack-batch tokens.
constexpr std::chrono::microseconds kAckDelay(1000);

}  // namespace

WsConnection::WsConnection(net::io_context& ioc, const LoadOptions& options,
                           const std::string& topic, const std::string& group, Role role, int index,
                           int role_count, RunCounters* counters)
    : ioc_(ioc),
      options_(options),
      topic_(topic),
      group_(group),
      role_(role),
      index_(index),
      role_count_(role_count),
      counters_(counters),
      ws_(ioc),
      timer_(ioc) {}

void WsConnection::Open(std::atomic<int>* ready) {
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(options_.host, ec);
  beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
  beast::get_lowest_layer(ws_).async_connect(
      net::ip::tcp::endpoint(address, options_.port),
      [self = shared_from_this(), ready](beast::error_code e) {
        if (e) {
          self->counters_->Error(absl::StrCat("WebSocket connect: ", e.message()));
          ready->fetch_add(1);
          return;
        }
        beast::get_lowest_layer(self->ws_).socket().set_option(net::ip::tcp::no_delay(true));
        beast::get_lowest_layer(self->ws_).expires_never();
        self->ws_.auto_fragment(false);
        self->ws_.read_message_max(64 << 20);
        self->ws_.async_handshake(
            absl::StrCat(self->options_.host, ":", self->options_.port), "/v1/ws",
            [self, ready](beast::error_code e2) {
              if (e2) self->counters_->Error(absl::StrCat("WebSocket handshake: ", e2.message()));
              ready->fetch_add(1);
            });
      });
}

void WsConnection::Begin() {
  net::post(ws_.get_executor(), [self = shared_from_this()] {
    self->DoRead();
    if (self->role_ == Role::kConsumer) {
      self->Subscribe();
    } else if (self->options_.rate > 0) {
      // Stagger the publishers over one sending interval.
      const double interval_ns = 1e9 * self->role_count_ / self->options_.rate;
      self->begin_nanos_ =
          NowNanos() + static_cast<int64_t>(interval_ns * self->index_ / self->role_count_);
      self->SchedulePaced();
    } else {
      for (int i = 0; i < self->options_.inflight; ++i) self->SendPublish(self->options_.batch);
    }
  });
}

void WsConnection::Close() {
  net::post(ws_.get_executor(), [self = shared_from_this()] {
    self->closed_ = true;
    self->timer_.cancel();
    beast::error_code ec;
    beast::get_lowest_layer(self->ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(self->ws_).close();
  });
}

// ---- reading and writing

void WsConnection::DoRead() {
  ws_.async_read(buffer_, beast::bind_front_handler(&WsConnection::OnRead, shared_from_this()));
}

void WsConnection::OnRead(beast::error_code ec, size_t /*bytes*/) {
  if (ec) {
    if (!closed_) counters_->Error(absl::StrCat("WebSocket read: ", ec.message()));
    closed_ = true;
    done_.store(true);
    return;
  }
  const auto data = buffer_.cdata();
  HandleFrame(static_cast<const char*>(data.data()), data.size());
  buffer_.consume(buffer_.size());
  if (!closed_) DoRead();
}

void WsConnection::Send(std::string frame) {
  if (closed_) return;
  queue_.push_back(std::move(frame));
  if (!writing_) DoWrite();
}

void WsConnection::DoWrite() {
  writing_ = true;
  ws_.text(true);
  ws_.async_write(net::buffer(queue_.front()),
                  [self = shared_from_this()](beast::error_code ec, size_t) {
                    self->writing_ = false;
                    if (ec) {
                      if (!self->closed_) {
                        self->counters_->Error(absl::StrCat("WebSocket write: ", ec.message()));
                      }
                      self->closed_ = true;
                      self->done_.store(true);
                      return;
                    }
                    self->queue_.pop_front();
                    if (!self->queue_.empty() && !self->closed_) self->DoWrite();
                  });
}

void WsConnection::HandleFrame(const char* data, size_t size) {
  const json::string_view text(data, size);
  if (LooksLikeMessagesFrame(absl::string_view(data, size))) {
    const int64_t now = NowNanos();
    absl::Status read = ForEachDelivery(
        absl::string_view(data, size),
        [&](bool ok, absl::string_view value, absl::string_view token, uint64_t tag) {
          if (!ok) {
            counters_->Error("delivery without value or delivery token or tag");
            return;
          }
          HandleDelivery(value, token, tag, now);
        });
    if (!read.ok()) {
      counters_->Error(absl::StrCat(read.message(), ": ", std::string(text.substr(0, 200))));
    }
    return;
  }
  json::monotonic_resource mr(parse_buffer_, sizeof(parse_buffer_));
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, &mr);
  if (ec || !v.is_object()) {
    counters_->Error(absl::StrCat("unparsable frame: ", std::string(text.substr(0, 200))));
    return;
  }
  const json::object& f = v.get_object();
  const json::value* type = f.if_contains("type");
  if (type == nullptr || !type->is_string()) {
    counters_->Error(absl::StrCat("frame without a type: ", std::string(text.substr(0, 200))));
    return;
  }
  const json::string_view t = type->get_string();
  if (t == "message") {
    HandleDelivery(f, NowNanos());
  } else if (t == "messages") {
    const json::value* messages = f.if_contains("messages");
    if (messages == nullptr || !messages->is_array()) {
      counters_->Error(
          absl::StrCat("messages frame without messages: ", std::string(text.substr(0, 200))));
      return;
    }
    const int64_t now = NowNanos();
    for (const json::value& m : messages->get_array()) {
      if (!m.is_object()) {
        counters_->Error("messages frame with a non-object element");
        continue;
      }
      HandleDelivery(m.get_object(), now);
    }
  } else if (t == "published") {
    const json::value* results = f.if_contains("results");
    const int64_t n = results != nullptr && results->is_array()
                          ? static_cast<int64_t>(results->get_array().size())
                          : 0;
    counters_->published.fetch_add(n, std::memory_order_relaxed);
    counters_->last_publish_nanos.store(NowNanos(), std::memory_order_relaxed);
    --outstanding_;
    PublishMore();
  } else if (t == "acked") {
    const json::value* applied = f.if_contains("applied");
    const json::value* refused = f.if_contains("refused");
    if (applied != nullptr && applied->is_int64()) {
      counters_->acked.fetch_add(applied->get_int64(), std::memory_order_relaxed);
      counters_->last_ack_nanos.store(NowNanos(), std::memory_order_relaxed);
    }
    if (refused != nullptr && refused->is_array() && !refused->get_array().empty()) {
      counters_->Error(absl::StrCat("ack refused: ", std::string(text.substr(0, 300))));
    }
  } else if (t == "subscribed") {
    const json::value* id = f.if_contains("subscription");
    if (id != nullptr && id->is_int64()) subscription_ = id->get_int64();
  } else if (t == "error") {
    counters_->Error(absl::StrCat("error frame: ", std::string(text.substr(0, 300))));
    if (role_ == Role::kPublisher && f.if_contains("request") != nullptr) {
      --outstanding_;
      PublishMore();
    }
  } else {
    counters_->Error(absl::StrCat("unexpected frame: ", std::string(text.substr(0, 200))));
  }
}

void WsConnection::HandleDelivery(const json::object& m, int64_t now) {
  const json::value* value = m.if_contains("value");
  const json::value* token = m.if_contains("delivery_token");
  const json::value* tag = m.if_contains("delivery_tag");
  const bool has_token = token != nullptr && token->is_string();
  const bool has_tag = tag != nullptr && tag->is_int64() && tag->get_int64() > 0;
  if (value == nullptr || !value->is_string() || !(has_token || has_tag)) {
    counters_->Error("delivery without value or delivery token or tag");
    return;
  }
  const json::string_view v = value->get_string();
  const json::string_view t =
      has_token ? json::string_view(token->get_string()) : json::string_view();
  HandleDelivery(absl::string_view(v.data(), v.size()), absl::string_view(t.data(), t.size()),
                 has_tag ? static_cast<uint64_t>(tag->get_int64()) : 0, now);
}

void WsConnection::HandleDelivery(absl::string_view value, absl::string_view token, uint64_t tag,
                                  int64_t now) {
  absl::StatusOr<int64_t> sent = PayloadTime(value);
  if (!sent.ok()) {
    counters_->Error(sent.status().ToString());
  } else {
    latencies_.push_back(now - *sent);
  }
  counters_->consumed.fetch_add(1, std::memory_order_relaxed);
  int pending = 0;
  if (tag > 0) {
    last_tag_ = std::max(last_tag_, tag);
    pending = ++pending_tags_;
  } else {
    pending_tokens_.emplace_back(token);
    pending = static_cast<int>(pending_tokens_.size());
  }
  if (pending >= options_.ack_batch) {
    FlushAcks();
  } else if (!flush_armed_) {
    flush_armed_ = true;
    timer_.expires_after(kAckDelay);
    timer_.async_wait([self = shared_from_this()](beast::error_code e) {
      self->flush_armed_ = false;
      if (!e && !self->closed_) self->FlushAcks();
    });
  }
}

// ---- publishing

void WsConnection::SendPublish(int messages) {
  const int64_t now = NowNanos();
  std::string frame;
  frame.reserve(static_cast<size_t>(messages) * (options_.message_bytes + 16) + 128);
  absl::StrAppend(&frame, "{\"type\":\"publish\",\"request\":", next_request_++, ",\"topic\":\"",
                  topic_, "\",\"messages\":[");
  const std::string payload = MakePayload(now, options_.message_bytes);
  for (int i = 0; i < messages; ++i) {
    if (i > 0) frame.push_back(',');
    absl::StrAppend(&frame, "{\"value\":\"", payload, "\"}");
  }
  frame += "]}";
  ++outstanding_;
  sent_messages_ += messages;
  Send(std::move(frame));
}

void WsConnection::PublishMore() {
  if (counters_->stop_publishing.load(std::memory_order_relaxed) || options_.rate > 0) {
    MaybeDone();
    return;
  }
  SendPublish(options_.batch);
}

void WsConnection::MaybeDone() {
  if (counters_->stop_publishing.load(std::memory_order_relaxed) && outstanding_ <= 0) {
    done_.store(true);
  }
}

void WsConnection::SchedulePaced() {
  if (closed_) return;
  if (counters_->stop_publishing.load(std::memory_order_relaxed)) {
    MaybeDone();
    return;
  }
  const double per_ns = options_.rate / role_count_ / 1e9;
  const int64_t now = NowNanos();
  if (now >= begin_nanos_) {
    // Messages due by now: the first at begin, then one every 1/rate.
    const int64_t due = static_cast<int64_t>(std::floor((now - begin_nanos_) * per_ns)) + 1;
    while (sent_messages_ < due && outstanding_ < kMaxPacedOutstanding) {
      SendPublish(static_cast<int>(std::min<int64_t>(options_.batch, due - sent_messages_)));
    }
    if (sent_messages_ < due) sent_messages_ = due;  // slipped: do not burst later
  }
  const int64_t next = begin_nanos_ + static_cast<int64_t>(std::ceil(sent_messages_ / per_ns));
  timer_.expires_after(std::chrono::nanoseconds(std::max<int64_t>(0, next - NowNanos())));
  timer_.async_wait([self = shared_from_this()](beast::error_code e) {
    if (!e) self->SchedulePaced();
  });
}

// ---- consuming

void WsConnection::Subscribe() {
  Send(absl::StrCat("{\"type\":\"subscribe\",\"request\":0,\"topic\":\"", topic_, "\",\"group\":\"",
                    group_, "\",\"consumer\":\"once-load-", index_,
                    "\",\"credits\":", options_.credits, options_.ws_batch ? ",\"batch\":true" : "",
                    options_.delivery_tags ? ",\"delivery_tags\":true}" : "}"));
}

void WsConnection::FlushAcks() {
  if (subscription_ < 0) return;
  if (pending_tags_ > 0) {
    // Every tag up to the highest seen: they arrive in order.
    Send(absl::StrCat("{\"type\":\"ack\",\"request\":", next_request_++,
                      ",\"subscription\":", subscription_, ",\"up_to\":", last_tag_, "}"));
    Send(absl::StrCat("{\"type\":\"credit\",\"subscription\":", subscription_,
                      ",\"credits\":", pending_tags_, "}"));
    pending_tags_ = 0;
  }
  if (pending_tokens_.empty()) return;
  std::string frame;
  frame.reserve(pending_tokens_.size() * 72 + 96);
  absl::StrAppend(&frame, "{\"type\":\"ack\",\"request\":", next_request_++,
                  ",\"subscription\":", subscription_, ",\"tokens\":[");
  for (size_t i = 0; i < pending_tokens_.size(); ++i) {
    if (i > 0) frame.push_back(',');
    absl::StrAppend(&frame, "\"", pending_tokens_[i], "\"");
  }
  frame += "]}";
  Send(std::move(frame));
  Send(absl::StrCat("{\"type\":\"credit\",\"subscription\":", subscription_,
                    ",\"credits\":", pending_tokens_.size(), "}"));
  pending_tokens_.clear();
}

}  // namespace once::load
