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
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/http/field.hpp"
#include "boost/beast/websocket/error.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/json/array.hpp"
#include "boost/json/serialize.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
namespace json = boost::json;

namespace {

// A subscription's fetch waits this long at most before it looks again
// (it is woken sooner by anything that makes messages available).
constexpr std::chrono::milliseconds kPushWait(30'000);

constexpr absl::string_view kUnknownFrameType = "unknown_frame_type";
constexpr absl::string_view kSubscriptionNotFound = "subscription_not_found";
constexpr absl::string_view kTooManySubscriptions = "too_many_subscriptions";

absl::Status FrameError(absl::string_view message) {
  return ApiError(absl::StatusCode::kInvalidArgument, kInvalidField, message);
}

// A frame's "request" (any JSON value the client chose), if it has one.
const json::value* RequestOf(const json::object& frame) {
  const json::value* r = frame.if_contains("request");
  return r == nullptr || r->is_null() ? nullptr : r;
}

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
    if (sub.poll) sub.poll->Wake();
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
  reading_ = false;
  if (ec) {
    // Closed by the peer, timed out (no pong), reset, or a frame over
    // read_message_max: the connection is over either way.
    if (ec != websocket::error::closed) {
      spdlog::debug("WebSocket read ended: {}", ec.message());
    }
    Finish();
    return;
  }
  const bool text = ws_.got_text();
  std::string frame = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (!text) {
    SendError(FrameError("binary frames are not part of the protocol; send JSON text frames"),
              nullptr);
  } else {
    try {
      HandleFrame(frame);
    } catch (const std::exception& e) {
      spdlog::error("WebSocket frame handler threw: {}", e.what());
      SendError(absl::InternalError("internal error while handling the frame"), nullptr);
    }
  }
  DoRead();
}

void WebSocketSession::HandleFrame(const std::string& text) {
  absl::StatusOr<json::object> frame = ParseJsonObject(text, "the frame", false);
  if (!frame.ok()) {
    SendError(frame.status(), nullptr);
    return;
  }
  const json::value* type = frame->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    SendError(FrameError("the frame: field \"type\" (a string) is required"), RequestOf(*frame));
    return;
  }
  const json::string& t = type->get_string();
  if (t == "publish") {
    HandlePublish(*std::move(frame));
  } else if (t == "subscribe") {
    HandleSubscribe(*std::move(frame));
  } else if (t == "credit") {
    HandleCredit(*frame);
  } else if (t == "ack") {
    HandleAck(*frame, /*nack=*/false);
  } else if (t == "nack") {
    HandleAck(*frame, /*nack=*/true);
  } else if (t == "unsubscribe") {
    HandleUnsubscribe(*frame);
  } else if (t == "hello" || t == "vote" || t == "done") {
    HandleParticipantFrame(text);
  } else {
    SendError(ApiError(absl::StatusCode::kInvalidArgument, kUnknownFrameType,
                       absl::StrCat("unknown frame type \"", std::string(t),
                                    "\"; expected publish, subscribe, credit, ack, nack, "
                                    "unsubscribe, hello, vote or done")),
              RequestOf(*frame));
  }
}

// ---- publishing

void WebSocketSession::HandlePublish(json::object frame) {
  publish_queue_.push_back(std::move(frame));
  ++inflight_publishes_;
  if (!publishing_) StartPublishing();
}

namespace {

// One publish frame, checked: its topic and messages, or the answer to
// send instead.
struct ParsedPublish {
  std::shared_ptr<broker::Topic> topic;
  std::vector<broker::Record> records;
};

// Moves the frame's "messages" out (only its "request" is needed after).
absl::StatusOr<ParsedPublish> ParsePublish(BrokerApi* api, json::object& frame) {
  FieldReader r(frame, "the publish frame");
  std::string topic_name;
  bool has_topic = false;
  r.Get("type");
  r.Get("request");
  ONCE_RETURN_IF_ERROR(r.String("topic", &topic_name, &has_topic));
  r.Get("messages");
  ONCE_RETURN_IF_ERROR(r.NoOtherFields());
  if (!has_topic) return r.FieldError("topic", "is required");
  json::object body;
  // Moved, not copied: a deep copy cost an allocation per message.
  if (json::value* messages = frame.if_contains("messages")) {
    body["messages"] = std::move(*messages);
  }
  ParsedPublish parsed;
  ONCE_ASSIGN_OR_RETURN(parsed.records, PublishRequestFromJson(body, nullptr));
  ONCE_ASSIGN_OR_RETURN(parsed.topic, api->FindTopic(topic_name));
  ONCE_RETURN_IF_ERROR(BrokerApi::CheckMessageSizes(*parsed.topic, parsed.records));
  return parsed;
}

json::object ErrorFrame(const absl::Status& status, const json::value* request) {
  json::object frame;
  frame["type"] = "error";
  if (request != nullptr) frame["request"] = *request;
  frame["code"] = ApiCodeOf(status);
  frame["message"] = std::string(status.message());
  frame["status"] = HttpStatusFor(status);
  return frame;
}

}  // namespace

void WebSocketSession::StartPublishing() {
  publishing_ = true;
  std::vector<json::object> frames(std::make_move_iterator(publish_queue_.begin()),
                                   std::make_move_iterator(publish_queue_.end()));
  publish_queue_.clear();
  net::post(api_->workers(), [self = shared_from_this(), frames = std::move(frames)]() mutable {
    const size_t n = frames.size();
    std::vector<json::object> answers(n);
    std::vector<absl::StatusOr<ParsedPublish>> parsed;
    parsed.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      parsed.push_back(ParsePublish(self->api_, frames[i]));
      if (!parsed[i].ok()) answers[i] = ErrorFrame(parsed[i].status(), RequestOf(frames[i]));
    }
    // Consecutive frames for one topic go to the broker as one publish,
    // in frame order: one durable write for all of them.
    for (size_t i = 0; i < n;) {
      if (!parsed[i].ok()) {
        ++i;
        continue;
      }
      const std::shared_ptr<broker::Topic> topic = parsed[i]->topic;
      std::vector<broker::Record> combined;
      std::vector<size_t> counts;
      size_t j = i;
      while (j < n && parsed[j].ok() && parsed[j]->topic == topic &&
             (j == i || combined.size() + parsed[j]->records.size() <= kMaxMessagesPerPublish)) {
        counts.push_back(parsed[j]->records.size());
        for (broker::Record& r : parsed[j]->records) combined.push_back(std::move(r));
        ++j;
      }
      absl::StatusOr<std::vector<broker::PublishResult>> results =
          self->api_->PublishRecords(topic, std::move(combined));
      size_t at = 0;
      for (size_t k = i; k < j; ++k) {
        const json::value* request = RequestOf(frames[k]);
        if (!results.ok()) {
          answers[k] = ErrorFrame(results.status(), request);
          continue;
        }
        const size_t count = counts[k - i];
        json::object answer;
        answer["type"] = "published";
        if (request != nullptr) answer["request"] = *request;
        answer["results"] =
            PublishResultsToJson(absl::MakeConstSpan(results->data() + at, count))["results"];
        at += count;
        answers[k] = std::move(answer);
      }
      i = j;
    }
    net::post(self->ws_.get_executor(), [self, answers = std::move(answers)]() mutable {
      self->OnPublished(std::move(answers));
    });
  });
}

void WebSocketSession::OnPublished(std::vector<json::object> answers) {
  publishing_ = false;
  inflight_publishes_ -= static_cast<int>(answers.size());
  for (const json::object& answer : answers) Send(answer);
  if (!publish_queue_.empty()) {
    StartPublishing();
  } else if (closing_ && inflight_publishes_ == 0 && !writing_) {
    DoClose();
  }
  MaybeResumeReading();
}

// ---- subscriptions

void WebSocketSession::HandleSubscribe(json::object frame) {
  const json::value* request = RequestOf(frame);
  FieldReader r(frame, "the subscribe frame");
  std::string topic, group, consumer;
  bool has_topic = false, has_group = false, has_consumer = false;
  int64_t credits = 0;
  bool batch = false;
  r.Get("type");
  r.Get("request");
  absl::Status s = r.String("topic", &topic, &has_topic);
  if (s.ok()) s = r.String("group", &group, &has_group);
  if (s.ok()) s = r.String("consumer", &consumer, &has_consumer);
  if (s.ok()) s = r.Int("credits", &credits, 0, kMaxCredits);
  if (s.ok()) s = r.Bool("batch", &batch);
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && !has_topic) s = r.FieldError("topic", "is required");
  if (s.ok() && !has_group) s = r.FieldError("group", "is required");
  if (s.ok() && !has_consumer) s = r.FieldError("consumer", "is required (the consumer's id)");
  if (s.ok()) {
    if (absl::Status c = broker::ValidateConsumerId(consumer); !c.ok()) {
      s = FrameError(absl::StrCat("the subscribe frame: field \"consumer\": ", c.message()));
    }
  }
  if (s.ok() && subscriptions_.size() >= kMaxSubscriptionsPerSocket) {
    s = ApiError(
        absl::StatusCode::kResourceExhausted, kTooManySubscriptions,
        absl::StrCat("at most ", kMaxSubscriptionsPerSocket, " subscriptions per connection"));
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }
  json::value request_copy = request != nullptr ? *request : json::value(nullptr);
  net::post(api_->workers(), [self = shared_from_this(), topic, group, consumer, credits, batch,
                              request_copy = std::move(request_copy)] {
    absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> g = self->api_->FindGroup(topic, group);
    if (g.ok() && (*g)->config().guarantee == broker::Guarantee::kExactlyOnce) {
      g = ApiError(absl::StatusCode::kFailedPrecondition, "exactly_once_group",
                   absl::StrCat("group \"", group,
                                "\" is exactly-once: it delivers only through "
                                "participant sessions (hello), not subscriptions"));
    }
    net::post(self->ws_.get_executor(), [self, g = std::move(g), topic, group, consumer, credits,
                                         batch, request_copy = std::move(request_copy)]() mutable {
      const json::value* request = request_copy.is_null() ? nullptr : &request_copy;
      if (self->finished_ || self->closing_) return;
      if (!g.ok()) {
        self->SendError(g.status(), request);
        return;
      }
      if (self->subscriptions_.size() >= kMaxSubscriptionsPerSocket) {
        self->SendError(ApiError(absl::StatusCode::kResourceExhausted, kTooManySubscriptions,
                                 "too many subscriptions on this connection"),
                        request);
        return;
      }
      Subscription& sub = self->subscriptions_[self->next_subscription_];
      sub.id = self->next_subscription_++;
      sub.topic = topic;
      sub.group_name = group;
      sub.consumer = consumer;
      sub.group = *std::move(g);
      sub.credits = credits;
      sub.batch = batch;
      // Until frames have been seen, assume the largest the topic allows
      // (base64 and JSON framing included).
      sub.average_frame_bytes =
          static_cast<double>(sub.group->topic()->config().max_message_bytes) * 4 / 3 + 512;
      json::object answer;
      answer["type"] = "subscribed";
      if (request != nullptr) answer["request"] = *request;
      answer["subscription"] = sub.id;
      answer["topic"] = topic;
      answer["group"] = group;
      self->Send(answer);
      self->Pump(sub);
    });
  });
}

void WebSocketSession::HandleCredit(const json::object& frame) {
  const json::value* request = RequestOf(frame);
  FieldReader r(frame, "the credit frame");
  int64_t id = -1, credits = 0;
  r.Get("type");
  r.Get("request");
  absl::Status s = r.Int("subscription", &id, 0);
  if (s.ok()) s = r.Int("credits", &credits, 1, kMaxCredits);
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && id < 0) s = r.FieldError("subscription", "is required");
  if (s.ok() && credits == 0)
    s = r.FieldError("credits", "is required (1.." + std::to_string(kMaxCredits) + ")");
  Subscription* sub = nullptr;
  if (s.ok()) {
    absl::StatusOr<Subscription*> found = FindSubscription(id);
    s = found.status();
    if (s.ok()) sub = *found;
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }
  // Outstanding credits are capped: a client cannot ask the server to
  // queue without bound.
  sub->credits = std::min(kMaxCredits, sub->credits + credits);
  Pump(*sub);
}

void WebSocketSession::HandleUnsubscribe(const json::object& frame) {
  const json::value* request = RequestOf(frame);
  FieldReader r(frame, "the unsubscribe frame");
  int64_t id = -1;
  r.Get("type");
  r.Get("request");
  absl::Status s = r.Int("subscription", &id, 0);
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && id < 0) s = r.FieldError("subscription", "is required");
  Subscription* sub = nullptr;
  if (s.ok()) {
    absl::StatusOr<Subscription*> found = FindSubscription(id);
    s = found.status();
    if (s.ok()) sub = *found;
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }
  EndSubscription(*sub);
  json::object answer;
  answer["type"] = "unsubscribed";
  if (request != nullptr) answer["request"] = *request;
  answer["subscription"] = id;
  Send(answer);
}

absl::StatusOr<WebSocketSession::Subscription*> WebSocketSession::FindSubscription(int64_t id) {
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end()) {
    return ApiError(absl::StatusCode::kNotFound, kSubscriptionNotFound,
                    absl::StrCat("no subscription ", id, " on this connection"));
  }
  return &it->second;
}

void WebSocketSession::EndSubscription(Subscription& sub) {
  // A fetch in flight comes back to OnDelivered, finds no subscription
  // and releases what it got.
  if (sub.poll) sub.poll->Wake();
  std::vector<std::string> tokens(sub.outstanding.begin(), sub.outstanding.end());
  const bool ordered = sub.group->config().mode == broker::GroupMode::kOrdered;
  Release(sub.group, std::move(tokens), ordered ? sub.consumer : "");
  subscriptions_.erase(sub.id);
}

void WebSocketSession::Release(std::shared_ptr<broker::ConsumerGroup> group,
                               std::vector<std::string> tokens, const std::string& leave_consumer) {
  if (tokens.empty() && leave_consumer.empty()) return;
  net::post(api_->workers(),
            [api = api_, group = std::move(group), tokens = std::move(tokens), leave_consumer] {
              if (!tokens.empty()) {
                absl::StatusOr<broker::AckResult> r =
                    api->AckTokens(group, tokens, /*nack=*/true, /*requeue=*/true);
                if (!r.ok()) {
                  spdlog::debug("releasing {} deliveries of group \"{}\": {}", tokens.size(),
                                group->name(), r.status().ToString());
                }
              }
              if (!leave_consumer.empty()) {
                if (absl::Status s = group->Leave(leave_consumer); !s.ok()) {
                  spdlog::debug("consumer \"{}\" leaving group \"{}\": {}", leave_consumer,
                                group->name(), s.ToString());
                }
              }
            });
}

void WebSocketSession::PumpAll() {
  for (auto& [id, sub] : subscriptions_) Pump(sub);
}

void WebSocketSession::Pump(Subscription& sub) {
  if (finished_ || closing_ || sub.poll || sub.credits <= 0 || queued_bytes_ >= kMaxQueuedBytes ||
      api_->polls()->draining()) {
    return;
  }
  const double room = static_cast<double>(kMaxQueuedBytes - queued_bytes_);
  const int64_t fits = std::max<int64_t>(1, static_cast<int64_t>(room / sub.average_frame_bytes));
  const int max = static_cast<int>(std::min<int64_t>({sub.credits, kMaxMessagesPerPush, fits}));
  const int64_t id = sub.id;
  std::shared_ptr<broker::ConsumerGroup> group = sub.group;
  std::weak_ptr<WebSocketSession> weak = weak_from_this();
  sub.poll = std::make_shared<LongPoll>(
      api_->ioc(), api_->workers(), api_->polls(), api_->clock(), sub.group, sub.consumer, max,
      kPushWait, [self = shared_from_this(), id, group](LongPoll::Result result) {
        net::post(self->ws_.get_executor(),
                  [self, id, group, result = std::move(result)]() mutable {
                    auto it = self->subscriptions_.find(id);
                    if (it == self->subscriptions_.end() || it->second.group != group) {
                      // Unsubscribed or closed meanwhile: give back what came.
                      if (result.ok() && !result->empty()) {
                        std::vector<std::string> tokens;
                        for (const broker::Delivery& d : *result) tokens.push_back(d.token);
                        self->Release(group, std::move(tokens), "");
                      }
                      return;
                    }
                    self->OnDelivered(id, std::move(result));
                  });
      });
  sub.poll->Start();
}

void WebSocketSession::OnDelivered(int64_t id, LongPoll::Result result) {
  Subscription& sub = subscriptions_.at(id);
  sub.poll.reset();
  if (!result.ok()) {
    json::object extra;
    extra["subscription"] = id;
    SendError(BrokerApi::FetchError(result.status()), nullptr, std::move(extra));
    EndSubscription(sub);
    return;
  }
  if (finished_ || closing_) {
    std::vector<std::string> tokens;
    for (const broker::Delivery& d : *result) tokens.push_back(d.token);
    Release(sub.group, std::move(tokens), "");
    return;
  }
  int64_t redelivered = 0;
  // Send only adds to queued_bytes_ (writes complete later, on the
  // strand): the growth is this batch's size.
  const size_t queued_before = queued_bytes_;
  // Batched subscriptions get the whole push as one frame: one write
  // instead of one per delivery.
  json::object batch_frame;
  json::array* batch = nullptr;
  if (sub.batch && !result->empty()) {
    batch_frame["type"] = "messages";
    batch_frame["subscription"] = id;
    batch = &batch_frame["messages"].emplace_array();
    batch->reserve(result->size());
  }
  for (const broker::Delivery& d : *result) {
    if (batch != nullptr) {
      batch->emplace_back(DeliveryToJson(sub.topic, d));
    } else {
      json::object frame;
      frame["type"] = "message";
      frame["subscription"] = id;
      for (auto& field : DeliveryToJson(sub.topic, d))
        frame[field.key()] = std::move(field.value());
      Send(frame);
    }
    sub.outstanding.insert(d.token);
    --sub.credits;
    redelivered += d.delivery_count > 1 ? 1 : 0;
  }
  if (batch != nullptr) Send(batch_frame);
  if (!result->empty()) {
    const double batch_average =
        static_cast<double>(queued_bytes_ - queued_before) / static_cast<double>(result->size());
    sub.average_frame_bytes = (sub.average_frame_bytes + batch_average) / 2;
    api_->metrics().CountDelivered(sub.topic, sub.group_name, static_cast<int64_t>(result->size()),
                                   redelivered);
  }
  Pump(sub);
}

// ---- acks

void WebSocketSession::HandleAck(const json::object& frame, bool nack) {
  const json::value* request = RequestOf(frame);
  const char* what = nack ? "the nack frame" : "the ack frame";
  FieldReader r(frame, what);
  int64_t id = -1;
  r.Get("type");
  r.Get("request");
  const json::value* tokens_value = r.Get("tokens");
  const json::value* requeue_value = nack ? r.Get("requeue") : nullptr;
  absl::Status s = r.Int("subscription", &id, 0);
  if (s.ok()) s = r.NoOtherFields();
  absl::StatusOr<TokensRequest> tokens = TokensRequest();
  if (s.ok()) {
    json::object body;
    if (tokens_value != nullptr) body["tokens"] = *tokens_value;
    if (requeue_value != nullptr) body["requeue"] = *requeue_value;
    tokens = TokensRequestFromJson(body, nack);
    s = tokens.status();
  }
  // The groups to try, in order: the subscription's, or every one's.
  std::vector<std::shared_ptr<broker::ConsumerGroup>> groups;
  if (s.ok()) {
    if (id >= 0) {
      absl::StatusOr<Subscription*> found = FindSubscription(id);
      s = found.status();
      if (s.ok()) groups.push_back((*found)->group);
    } else {
      for (const auto& [sid, sub] : subscriptions_) {
        if (std::find(groups.begin(), groups.end(), sub.group) == groups.end()) {
          groups.push_back(sub.group);
        }
      }
      if (groups.empty()) {
        s = FrameError(absl::StrCat(what, ": no subscription on this connection to ",
                                    nack ? "nack" : "ack", " for"));
      }
    }
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }
  // The client has handed these back: not ours to release any more,
  // whatever the answer.
  for (auto& [sid, sub] : subscriptions_) {
    for (const std::string& t : tokens->tokens) sub.outstanding.erase(t);
  }
  json::value request_copy = request != nullptr ? *request : json::value(nullptr);
  net::post(
      api_->workers(), [self = shared_from_this(), groups = std::move(groups),
                        tokens = *std::move(tokens), nack, request_copy = std::move(request_copy)] {
        // A token not of one group's (kInvalidArgument) is tried on the next.
        broker::AckResult total;
        std::vector<std::string> remaining = tokens.tokens;
        std::vector<size_t> index(remaining.size());
        for (size_t i = 0; i < index.size(); ++i) index[i] = i;
        absl::Status failure;
        for (size_t g = 0; g < groups.size() && !remaining.empty(); ++g) {
          absl::StatusOr<broker::AckResult> r =
              self->api_->AckTokens(groups[g], remaining, nack, tokens.requeue);
          if (!r.ok()) {
            failure = r.status();
            break;
          }
          total.applied += r->applied;
          std::vector<std::string> next;
          std::vector<size_t> next_index;
          for (broker::TokenRefusal& refusal : r->refused) {
            const size_t original = index[refusal.index];
            if (absl::IsInvalidArgument(refusal.status) && g + 1 < groups.size()) {
              next.push_back(std::move(refusal.token));
              next_index.push_back(original);
            } else {
              refusal.index = original;
              total.refused.push_back(std::move(refusal));
            }
          }
          remaining = std::move(next);
          index = std::move(next_index);
        }
        std::sort(total.refused.begin(), total.refused.end(),
                  [](const broker::TokenRefusal& a, const broker::TokenRefusal& b) {
                    return a.index < b.index;
                  });
        net::post(self->ws_.get_executor(),
                  [self, total = std::move(total), failure = std::move(failure),
                   request_copy = std::move(request_copy)] {
                    const json::value* request = request_copy.is_null() ? nullptr : &request_copy;
                    if (!failure.ok()) {
                      self->SendError(failure, request);
                      return;
                    }
                    if (request != nullptr) {
                      // Confirmed once durable, with the per-token judgement.
                      json::object answer;
                      answer["type"] = "acked";
                      answer["request"] = *request;
                      for (auto& field : AckResultToJson(total))
                        answer[field.key()] = std::move(field.value());
                      self->Send(answer);
                      return;
                    }
                    const absl::Status refused = BrokerApi::RefusalStatus(total);
                    if (!refused.ok()) self->SendError(refused, nullptr, AckResultToJson(total));
                  });
      });
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
  json::object frame = ErrorFrame(status, request);
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
    if (sub.poll) sub.poll->Wake();
    std::vector<std::string> tokens(sub.outstanding.begin(), sub.outstanding.end());
    const bool ordered = sub.group->config().mode == broker::GroupMode::kOrdered;
    Release(sub.group, std::move(tokens), ordered ? sub.consumer : "");
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
