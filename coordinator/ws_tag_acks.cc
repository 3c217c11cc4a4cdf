// WebSocketSession: ack and nack frames by delivery tag (see
// websocket_session.h and schema/ws_protocol.md). The tags name handles
// the subscription kept (DeliveryTags); those still outstanding are
// taken from it and settled by handle, on a worker (or, for groups in
// RAM, on the strand), and the answer names refused ones by tag.
#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "coordinator/json_codec.h"
#include "coordinator/network_thread_work.h"
#include "coordinator/websocket_session.h"
#include "coordinator/ws_frames.h"

namespace once::coordinator {
namespace net = boost::asio;
namespace json = boost::json;

// What one tag ack frame came to: the handles taken from the
// subscription with each one's place (index in the request, tag), and
// the judgement: tags refused before settling (not outstanding) and those
// the group refused, each refusal with its tag.
struct WebSocketSession::TagAck {
  std::vector<broker::DeliveryToken> handles;
  std::vector<std::pair<size_t, uint64_t>> places;  // per handle
  broker::AckResult result;                         // refusals' tokens empty
  std::vector<uint64_t> refused_tags;               // per result.refused
  absl::Status failure;                             // the group's error: nothing applied
};

namespace {

// The tags of a "delivery_tags" field: 1..kMaxTokensPerCall positive
// integers.
absl::StatusOr<std::vector<uint64_t>> TagsFromJson(const json::value& v, FieldReader& r) {
  if (!v.is_array()) return r.FieldError("delivery_tags", "must be an array of delivery tags");
  const json::array& a = v.get_array();
  if (a.empty() || a.size() > broker::kMaxTokensPerCall) {
    return r.FieldError("delivery_tags", absl::StrCat("must hold 1 to ", broker::kMaxTokensPerCall,
                                                      " delivery tags, got ", a.size()));
  }
  std::vector<uint64_t> tags;
  tags.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_int64() || a[i].get_int64() <= 0) {
      return r.FieldError("delivery_tags",
                          absl::StrCat("element ", i, " must be a positive integer (a tag)"));
    }
    tags.push_back(static_cast<uint64_t>(a[i].get_int64()));
  }
  return tags;
}

}  // namespace

void WebSocketSession::HandleTagAck(const json::object& frame, bool nack) {
  const json::value* request = RequestOf(frame);
  const char* what = nack ? "the nack frame" : "the ack frame";
  FieldReader r(frame, what);
  int64_t id = -1, up_to = 0;
  bool requeue = true;
  r.Get("type");
  r.Get("request");
  const json::value* tags_value = r.Get("delivery_tags");
  absl::Status s = r.Int("up_to", &up_to, 1);
  if (s.ok()) s = r.Int("subscription", &id, 0);
  if (s.ok() && nack) s = r.Bool("requeue", &requeue);
  if (s.ok() && frame.contains("tokens")) {
    s = WsFrameError(absl::StrCat(what, ": \"tokens\" and delivery tags do not mix"));
  }
  if (s.ok()) s = r.NoOtherFields();
  if (s.ok() && tags_value != nullptr && up_to > 0) {
    s = WsFrameError(absl::StrCat(what, ": give \"delivery_tags\" or \"up_to\", not both"));
  }
  if (s.ok() && tags_value == nullptr && up_to == 0) {
    s = WsFrameError(absl::StrCat(what, ": \"delivery_tags\" or \"up_to\" is required"));
  }
  if (s.ok() && id < 0) s = r.FieldError("subscription", "is required with delivery tags");
  Subscription* sub = nullptr;
  if (s.ok()) {
    absl::StatusOr<Subscription*> found = FindSubscription(id);
    s = found.status();
    if (s.ok()) sub = *found;
  }
  if (s.ok() && !sub->tags) {
    s = WsFrameError(absl::StrCat("subscription ", id,
                                  " delivers tokens, not delivery tags: ack with \"tokens\""));
  }
  if (s.ok() && up_to >= static_cast<int64_t>(sub->tagged.next_tag())) {
    s = r.FieldError("up_to", absl::StrCat(up_to, " was never delivered (the last tag is ",
                                           sub->tagged.next_tag() - 1, ")"));
  }
  std::vector<uint64_t> tags;
  if (s.ok() && tags_value != nullptr) {
    absl::StatusOr<std::vector<uint64_t>> parsed = TagsFromJson(*tags_value, r);
    s = parsed.status();
    if (s.ok()) tags = *std::move(parsed);
  }
  if (!s.ok()) {
    SendError(s, request);
    return;
  }

  // Taken whatever the answer: the client has handed them back.
  TagAck ack = TakeTags(sub->tagged, id, static_cast<uint64_t>(up_to), tags);
  if (!ack.result.refused.empty()) {
    const int64_t n = static_cast<int64_t>(ack.result.refused.size());
    if (nack) {
      api_->metrics().CountNacked(sub->topic, sub->group_name, 0, n);
    } else {
      api_->metrics().CountAcked(sub->topic, sub->group_name, 0, n);
    }
  }
  // Acks (and requeueing nacks) of groups in RAM are settled here; the
  // rest on a worker (network_thread_work.h).
  if ((!nack || requeue) && GroupRunsOnNetworkThread(*sub->group)) {
    SettleTags(api_, sub->group, nack, requeue, &ack);
    AnswerTagAck(ack, request);
    return;
  }
  json::value request_copy =
      request != nullptr ? json::value(*request, json::storage_ptr()) : json::value(nullptr);
  net::post(
      api_->workers(), [self = shared_from_this(), group = sub->group, nack, requeue,
                        ack = std::move(ack), request_copy = std::move(request_copy)]() mutable {
        SettleTags(self->api_, group, nack, requeue, &ack);
        net::post(self->ws_.get_executor(),
                  [self, ack = std::move(ack), request_copy = std::move(request_copy)]() mutable {
                    self->AnswerTagAck(ack, request_copy.is_null() ? nullptr : &request_copy);
                  });
      });
}

WebSocketSession::TagAck WebSocketSession::TakeTags(DeliveryTags& tagged, int64_t subscription,
                                                    uint64_t up_to,
                                                    const std::vector<uint64_t>& tags) {
  TagAck ack;
  if (up_to > 0) {
    std::vector<DeliveryTags::Entry> taken;
    tagged.TakeThrough(up_to, &taken);
    for (size_t i = 0; i < taken.size(); ++i) {
      ack.handles.push_back(taken[i].second);
      ack.places.emplace_back(i, taken[i].first);
    }
    return ack;
  }
  for (size_t i = 0; i < tags.size(); ++i) {
    if (std::optional<broker::DeliveryToken> h = tagged.Take(tags[i])) {
      ack.handles.push_back(*h);
      ack.places.emplace_back(i, tags[i]);
      continue;
    }
    absl::Status refusal =
        tags[i] >= tagged.next_tag()
            ? absl::InvalidArgumentError(absl::StrCat(
                  "delivery tag ", tags[i], " was never delivered on subscription ", subscription))
            : absl::FailedPreconditionError(
                  absl::StrCat("delivery tag ", tags[i], " of subscription ", subscription,
                               " is not outstanding: already acked or nacked"));
    ack.result.refused.push_back({i, std::string(), std::move(refusal)});
    ack.refused_tags.push_back(tags[i]);
  }
  return ack;
}

void WebSocketSession::SettleTags(BrokerApi* api,
                                  const std::shared_ptr<broker::ConsumerGroup>& group, bool nack,
                                  bool requeue, TagAck* ack) {
  if (ack->handles.empty()) return;
  absl::StatusOr<broker::AckResult> r = api->AckHandles(group, ack->handles, nack, requeue);
  if (!r.ok()) {
    ack->failure = r.status();
    return;
  }
  ack->result.applied = r->applied;
  for (broker::TokenRefusal& refusal : r->refused) {
    const auto [index, tag] = ack->places[refusal.index];
    refusal.index = index;
    ack->result.refused.push_back(std::move(refusal));
    ack->refused_tags.push_back(tag);
  }
}

void WebSocketSession::AnswerTagAck(const TagAck& ack, const json::value* request) {
  if (!ack.failure.ok()) {
    SendError(ack.failure, request);
    return;
  }
  // {"applied", "refused": [{"index", "delivery_tag", "reason", "message"}]},
  // refusals in request order.
  std::vector<size_t> order(ack.result.refused.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ack.result.refused[a].index < ack.result.refused[b].index;
  });
  json::object body;
  body["applied"] = ack.result.applied;
  json::array refused;
  for (size_t i : order) {
    const broker::TokenRefusal& r = ack.result.refused[i];
    json::object ro;
    ro["index"] = static_cast<int64_t>(r.index);
    ro["delivery_tag"] = ack.refused_tags[i];
    ro["reason"] = absl::IsInvalidArgument(r.status) ? "invalid" : "stale";
    ro["message"] = std::string(r.status.message());
    refused.push_back(std::move(ro));
  }
  body["refused"] = std::move(refused);
  if (request != nullptr) {
    json::object frame;
    frame["type"] = "acked";
    frame["request"] = *request;
    for (auto& field : body) frame[field.key()] = std::move(field.value());
    Send(frame);
    return;
  }
  const absl::Status status = BrokerApi::RefusalStatus(ack.result);
  if (!status.ok()) SendError(status, nullptr, std::move(body));
}

}  // namespace once::coordinator
