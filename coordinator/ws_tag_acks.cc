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

namespace {

// What one tag ack frame came to: the taken handles with each one's place
// in the request and tag, and the tags refused before settling.
struct TagAck {
  std::vector<broker::DeliveryToken> handles;
  std::vector<std::pair<size_t, uint64_t>> places;  // per handle: index, tag
  std::vector<broker::TokenRefusal> refused;        // index and status; token unused
  std::vector<uint64_t> refused_tags;               // per refusal
};

// {"applied": N, "refused": [{"index", "delivery_tag", "reason", "message"}]},
// refusals in request order.
json::object TagAckResultToJson(int64_t applied, std::vector<broker::TokenRefusal> refused,
                                std::vector<uint64_t> tags) {
  std::vector<size_t> order(refused.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return refused[a].index < refused[b].index; });
  json::object o;
  o["applied"] = applied;
  json::array list;
  for (size_t i : order) {
    json::object ro;
    ro["index"] = static_cast<int64_t>(refused[i].index);
    ro["delivery_tag"] = tags[i];
    ro["reason"] = absl::IsInvalidArgument(refused[i].status) ? "invalid" : "stale";
    ro["message"] = std::string(refused[i].status.message());
    list.push_back(std::move(ro));
  }
  o["refused"] = std::move(list);
  return o;
}

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
  TagAck ack;
  if (up_to > 0) {
    std::vector<DeliveryTags::Entry> taken;
    sub->tagged.TakeThrough(static_cast<uint64_t>(up_to), &taken);
    for (size_t i = 0; i < taken.size(); ++i) {
      ack.handles.push_back(taken[i].second);
      ack.places.emplace_back(i, taken[i].first);
    }
  } else {
    for (size_t i = 0; i < tags.size(); ++i) {
      if (std::optional<broker::DeliveryToken> h = sub->tagged.Take(tags[i])) {
        ack.handles.push_back(*h);
        ack.places.emplace_back(i, tags[i]);
        continue;
      }
      const bool never = tags[i] >= sub->tagged.next_tag();
      absl::Status refusal =
          never ? absl::InvalidArgumentError(absl::StrCat(
                      "delivery tag ", tags[i], " was never delivered on subscription ", id))
                : absl::FailedPreconditionError(
                      absl::StrCat("delivery tag ", tags[i], " of subscription ", id,
                                   " is not outstanding: already acked or nacked"));
      ack.refused.push_back({i, std::string(), std::move(refusal)});
      ack.refused_tags.push_back(tags[i]);
    }
  }
  if (!ack.refused.empty()) {
    const int64_t n = static_cast<int64_t>(ack.refused.size());
    if (nack) {
      api_->metrics().CountNacked(sub->topic, sub->group_name, 0, n);
    } else {
      api_->metrics().CountAcked(sub->topic, sub->group_name, 0, n);
    }
  }

  // Settles the taken handles and answers (on the strand).
  auto settle = [api = api_, group = sub->group, nack, requeue](TagAck ack) {
    Settled settled;
    if (!ack.handles.empty()) {
      absl::StatusOr<broker::AckResult> r = api->AckHandles(group, ack.handles, nack, requeue);
      if (!r.ok()) {
        settled.failure = r.status();
        return std::make_pair(std::move(settled), std::move(ack));
      }
      settled.result.applied = r->applied;
      for (broker::TokenRefusal& refusal : r->refused) {
        const auto [index, tag] = ack.places[refusal.index];
        refusal.index = index;
        ack.refused.push_back(std::move(refusal));
        ack.refused_tags.push_back(tag);
      }
    }
    return std::make_pair(std::move(settled), std::move(ack));
  };
  auto answer = [](WebSocketSession* self, const Settled& settled, TagAck& ack,
                   const json::value* request) {
    if (!settled.failure.ok()) {
      self->SendError(settled.failure, request);
      return;
    }
    broker::AckResult judged;
    judged.applied = settled.result.applied;
    for (const broker::TokenRefusal& refusal : ack.refused) {
      judged.refused.push_back({refusal.index, std::string(), refusal.status});
    }
    json::object body =
        TagAckResultToJson(judged.applied, std::move(ack.refused), std::move(ack.refused_tags));
    if (request != nullptr) {
      json::object frame;
      frame["type"] = "acked";
      frame["request"] = *request;
      for (auto& field : body) frame[field.key()] = std::move(field.value());
      self->Send(frame);
      return;
    }
    const absl::Status refused = BrokerApi::RefusalStatus(judged);
    if (!refused.ok()) self->SendError(refused, nullptr, std::move(body));
  };

  // Acks (and requeueing nacks) of groups in RAM are settled here; the
  // rest on a worker (network_thread_work.h).
  if ((!nack || requeue) && GroupRunsOnNetworkThread(*sub->group)) {
    auto [settled, rest] = settle(std::move(ack));
    answer(this, settled, rest, request);
    return;
  }
  json::value request_copy =
      request != nullptr ? json::value(*request, json::storage_ptr()) : json::value(nullptr);
  net::post(api_->workers(), [self = shared_from_this(), settle, answer, ack = std::move(ack),
                              request_copy = std::move(request_copy)]() mutable {
    auto done = settle(std::move(ack));
    net::post(self->ws_.get_executor(), [self, answer, done = std::move(done),
                                         request_copy = std::move(request_copy)]() mutable {
      answer(self.get(), done.first, done.second, request_copy.is_null() ? nullptr : &request_copy);
    });
  });
}

}  // namespace once::coordinator
