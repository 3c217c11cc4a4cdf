// WebSocketSession: ack and nack frames (see websocket_session.h). The
// tokens are settled on a worker (or, for groups in RAM, on the strand),
// tried on the subscription's group or, without a subscription, on each
// of the connection's groups in turn.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "coordinator/json_codec.h"
#include "coordinator/network_thread_work.h"
#include "coordinator/websocket_session.h"
#include "coordinator/ws_frames.h"

namespace once::coordinator {
namespace net = boost::asio;
namespace json = boost::json;

void WebSocketSession::HandleAck(json::object& frame, bool nack) {
  if (frame.contains("delivery_tags") || frame.contains("up_to")) {
    HandleTagAck(frame, nack);
    return;
  }
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
    // In the frame's arena, and moved: an ack frame's tokens are most of
    // it, and moving a value within one storage copies nothing.
    json::object body(frame.storage());
    if (tokens_value != nullptr) body["tokens"] = std::move(frame["tokens"]);
    if (requeue_value != nullptr) body["requeue"] = std::move(frame["requeue"]);
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
        s = WsFrameError(absl::StrCat(what, ": no subscription on this connection to ",
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
  // Acks (and requeueing nacks) of groups in RAM are settled here; the
  // rest on a worker (network_thread_work.h). A nack that dead-letters
  // publishes to the dead-letter topic, which may be on disk.
  const bool here = (!nack || tokens->requeue) &&
                    std::all_of(groups.begin(), groups.end(),
                                [](const auto& g) { return GroupRunsOnNetworkThread(*g); });
  if (here) {
    Settled settled = Settle(api_, groups, *tokens, nack);
    AnswerSettled(settled, request);
    return;
  }
  // Off the frame's arena: the answer comes after the frame is gone.
  json::value request_copy =
      request != nullptr ? json::value(*request, json::storage_ptr()) : json::value(nullptr);
  net::post(api_->workers(), [self = shared_from_this(), groups = std::move(groups),
                              tokens = *std::move(tokens), nack,
                              request_copy = std::move(request_copy)]() mutable {
    Settled settled = Settle(self->api_, groups, tokens, nack);
    net::post(self->ws_.get_executor(),
              [self, settled = std::move(settled), request_copy = std::move(request_copy)] {
                self->AnswerSettled(settled, request_copy.is_null() ? nullptr : &request_copy);
              });
  });
}

WebSocketSession::Settled WebSocketSession::Settle(
    BrokerApi* api, const std::vector<std::shared_ptr<broker::ConsumerGroup>>& groups,
    const TokensRequest& tokens, bool nack) {
  // A token not of one group's (kInvalidArgument) is tried on the next:
  // `remaining`, at `index` in the frame's tokens (the first group gets
  // them all, uncopied).
  Settled settled;
  broker::AckResult& total = settled.result;
  std::vector<std::string> remaining;
  std::vector<size_t> index;
  for (size_t g = 0; g < groups.size() && (g == 0 || !remaining.empty()); ++g) {
    absl::StatusOr<broker::AckResult> r =
        api->AckTokens(groups[g], g == 0 ? tokens.tokens : remaining, nack, tokens.requeue);
    if (!r.ok()) {
      settled.failure = r.status();
      break;
    }
    total.applied += r->applied;
    std::vector<std::string> next;
    std::vector<size_t> next_index;
    for (broker::TokenRefusal& refusal : r->refused) {
      const size_t original = g == 0 ? refusal.index : index[refusal.index];
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
  return settled;
}

void WebSocketSession::AnswerSettled(const Settled& settled, const json::value* request) {
  if (!settled.failure.ok()) {
    SendError(settled.failure, request);
    return;
  }
  if (request != nullptr) {
    // Confirmed once durable, with the per-token judgement.
    json::object answer;
    answer["type"] = "acked";
    answer["request"] = *request;
    for (auto& field : AckResultToJson(settled.result))
      answer[field.key()] = std::move(field.value());
    Send(answer);
    return;
  }
  const absl::Status refused = BrokerApi::RefusalStatus(settled.result);
  if (!refused.ok()) SendError(refused, nullptr, AckResultToJson(settled.result));
}

}  // namespace once::coordinator
