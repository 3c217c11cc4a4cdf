// WebSocketSession: subscriptions, credits and pushes (see
// websocket_session.h). Each subscription with credits has at most one
// fetch in flight (its WsFeed); what it brings is sent and spends credits,
// and is released for redelivery if the subscription or the socket ends
// before the client acks it.
#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "coordinator/api_error.h"
#include "coordinator/json_codec.h"
#include "coordinator/websocket_session.h"
#include "coordinator/ws_frames.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace net = boost::asio;
namespace json = boost::json;

namespace {

constexpr absl::string_view kSubscriptionNotFound = "subscription_not_found";
constexpr absl::string_view kTooManySubscriptions = "too_many_subscriptions";

// What releasing deliveries that never reached the client gives back.
std::vector<broker::DeliveryToken> Handles(const std::vector<broker::Delivery>& deliveries) {
  std::vector<broker::DeliveryToken> handles;
  handles.reserve(deliveries.size());
  for (const broker::Delivery& d : deliveries) handles.push_back(d.handle);
  return handles;
}

}  // namespace

void WebSocketSession::HandleSubscribe(const json::object& frame) {
  const json::value* request = RequestOf(frame);
  FieldReader r(frame, "the subscribe frame");
  std::string topic, group, consumer;
  bool has_topic = false, has_group = false, has_consumer = false;
  int64_t credits = 0;
  bool batch = false;
  bool tags = false;
  r.Get("type");
  r.Get("request");
  absl::Status s = r.String("topic", &topic, &has_topic);
  if (s.ok()) s = r.String("group", &group, &has_group);
  if (s.ok()) s = r.String("consumer", &consumer, &has_consumer);
  if (s.ok()) s = r.Int("credits", &credits, 0, kMaxCredits);
  if (s.ok()) s = r.Bool("batch", &batch);
  if (s.ok()) s = r.Bool("delivery_tags", &tags);
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && !has_topic) s = r.FieldError("topic", "is required");
  if (s.ok() && !has_group) s = r.FieldError("group", "is required");
  if (s.ok() && !has_consumer) s = r.FieldError("consumer", "is required (the consumer's id)");
  if (s.ok()) {
    if (absl::Status c = broker::ValidateConsumerId(consumer); !c.ok()) {
      s = WsFrameError(absl::StrCat("the subscribe frame: field \"consumer\": ", c.message()));
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
  // Off the frame's arena: the answer comes after the frame is gone.
  json::value request_copy =
      request != nullptr ? json::value(*request, json::storage_ptr()) : json::value(nullptr);
  net::post(api_->workers(), [self = shared_from_this(), topic, group, consumer, credits, batch,
                              tags, request_copy = std::move(request_copy)] {
    absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> g = self->api_->FindGroup(topic, group);
    if (g.ok() && (*g)->config().guarantee == broker::Guarantee::kExactlyOnce) {
      g = ApiError(absl::StatusCode::kFailedPrecondition, "exactly_once_group",
                   absl::StrCat("group \"", group,
                                "\" is exactly-once: it delivers only through "
                                "participant sessions (hello), not subscriptions"));
    }
    net::post(
        self->ws_.get_executor(), [self, g = std::move(g), topic, group, consumer, credits, batch,
                                   tags, request_copy = std::move(request_copy)]() mutable {
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
          sub.tags = tags;
          sub.feed = std::make_shared<WsFeed>(
              self->api_->workers().get_executor(), self->ws_.get_executor(), self->api_->clock(),
              sub.group, consumer, self->FeedCallback(sub.id, sub.group), /*handles_only=*/tags);
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
          if (tags) answer["delivery_tags"] = true;
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
  sub.feed->Stop();
  std::vector<std::string> tokens(sub.outstanding.begin(), sub.outstanding.end());
  const bool ordered = sub.group->config().mode == broker::GroupMode::kOrdered;
  Release(sub.group, std::move(tokens), sub.tagged.TakeAll(), ordered ? sub.consumer : "");
  subscriptions_.erase(sub.id);
}

void WebSocketSession::Release(std::shared_ptr<broker::ConsumerGroup> group,
                               std::vector<std::string> tokens,
                               std::vector<broker::DeliveryToken> handles,
                               const std::string& leave_consumer) {
  if (tokens.empty() && handles.empty() && leave_consumer.empty()) return;
  net::post(api_->workers(), [api = api_, group = std::move(group), tokens = std::move(tokens),
                              handles = std::move(handles), leave_consumer] {
    if (!tokens.empty() || !handles.empty()) {
      absl::StatusOr<broker::AckResult> r =
          tokens.empty() ? api->AckHandles(group, handles, /*nack=*/true, /*requeue=*/true)
                         : api->AckTokens(group, tokens, /*nack=*/true, /*requeue=*/true);
      if (r.ok() && !tokens.empty() && !handles.empty()) {
        r = api->AckHandles(group, handles, /*nack=*/true, /*requeue=*/true);
      }
      if (!r.ok()) {
        spdlog::debug("releasing {} deliveries of group \"{}\": {}", tokens.size() + handles.size(),
                      group->name(), r.status().ToString());
      }
    }
    if (!leave_consumer.empty()) {
      if (absl::Status s = group->Leave(leave_consumer); !s.ok()) {
        spdlog::debug("consumer \"{}\" leaving group \"{}\": {}", leave_consumer, group->name(),
                      s.ToString());
      }
    }
  });
}

void WebSocketSession::PumpAll() {
  for (auto& [id, sub] : subscriptions_) Pump(sub);
}

void WebSocketSession::Pump(Subscription& sub) {
  if (finished_ || closing_ || sub.fetching || sub.credits <= 0 ||
      queued_bytes_ >= kMaxQueuedBytes || api_->polls()->draining()) {
    return;
  }
  const double room = static_cast<double>(kMaxQueuedBytes - queued_bytes_);
  const int64_t fits = std::max<int64_t>(1, static_cast<int64_t>(room / sub.average_frame_bytes));
  const int max = static_cast<int>(std::min<int64_t>({sub.credits, kMaxMessagesPerPush, fits}));
  sub.fetching = true;
  sub.feed->Request(max);
}

WsFeed::Deliver WebSocketSession::FeedCallback(int64_t id,
                                               std::shared_ptr<broker::ConsumerGroup> group) {
  return [weak = weak_from_this(), api = api_, id, group](WsFeed::Result result) {
    std::shared_ptr<WebSocketSession> self = weak.lock();
    if (!self) {
      // The session is gone (it released what it held): release this too.
      if (result.ok() && !result->empty()) {
        absl::StatusOr<broker::AckResult> r =
            api->AckHandles(group, Handles(*result), /*nack=*/true, /*requeue=*/true);
        if (!r.ok()) spdlog::debug("releasing deliveries: {}", r.status().ToString());
      }
      return;
    }
    // From a worker, a hand-off; from the strand (a feed fetching there),
    // at once.
    net::dispatch(self->ws_.get_executor(),
                  [self, id, group, result = std::move(result)]() mutable {
                    auto it = self->subscriptions_.find(id);
                    if (it == self->subscriptions_.end() || it->second.group != group) {
                      // Unsubscribed or closed meanwhile: give back what came.
                      if (result.ok() && !result->empty()) {
                        self->Release(group, {}, Handles(*result), "");
                      }
                      return;
                    }
                    self->OnDelivered(id, std::move(result));
                  });
  };
}

void WebSocketSession::OnDelivered(int64_t id, WsFeed::Result result) {
  Subscription& sub = subscriptions_.at(id);
  sub.fetching = false;
  if (!result.ok()) {
    json::object extra;
    extra["subscription"] = id;
    SendError(BrokerApi::FetchError(result.status()), nullptr, std::move(extra));
    EndSubscription(sub);
    return;
  }
  if (finished_ || closing_) {
    Release(sub.group, {}, Handles(*result), "");
    return;
  }
  int64_t redelivered = 0;
  // Send only adds to queued_bytes_ (writes complete later, on the
  // strand): the growth is this batch's size.
  const size_t queued_before = queued_bytes_;
  // Batched subscriptions get the whole push as one frame: one write
  // instead of one per delivery.
  // With delivery tags, the deliveries get the next tags in order.
  const uint64_t first_tag = sub.tags ? sub.tagged.next_tag() : 0;
  if (sub.batch && !result->empty()) {
    SendText(MessagesFrame(id, sub.topic, *result, first_tag));
  }
  for (broker::Delivery& d : *result) {
    if (sub.tags) {
      const uint64_t tag = sub.tagged.Add(d.handle);
      if (!sub.batch) SendText(MessageFrame(id, sub.topic, d, tag));
    } else {
      if (!sub.batch) SendText(MessageFrame(id, sub.topic, d));
      // The frame is written: the token moves to the set, uncopied.
      sub.outstanding.insert(std::move(d.token));
    }
    --sub.credits;
    redelivered += d.delivery_count > 1 ? 1 : 0;
  }
  if (!result->empty()) {
    const double batch_average =
        static_cast<double>(queued_bytes_ - queued_before) / static_cast<double>(result->size());
    sub.average_frame_bytes = (sub.average_frame_bytes + batch_average) / 2;
    api_->metrics().CountDelivered(sub.topic, sub.group_name, static_cast<int64_t>(result->size()),
                                   redelivered);
  }
  Pump(sub);
}

}  // namespace once::coordinator
